"""The launch path's compact JWS reader, alone and against PyJWT.

Each refusal has its own case. The differential test mutates a real signed
token and asks both readers: we must never accept a token PyJWT refuses, and
we must accept every token PyJWT accepts except the spellings we refuse on
purpose (padding, critical extensions).
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import jwt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lti_middleware import jws
from lti_middleware.keys import ToolKey, generate_key


@cache
def signer() -> ToolKey:
    return generate_key()


@cache
def public_jwk(alg: str = "RS256") -> jwt.PyJWK:
    return jwt.PyJWK(signer().public_jwk(), algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims: dict[str, Any] | None = None, **headers: Any) -> str:
    return jwt.encode(
        claims or {"sub": "learner", "nonce": "n-1"},
        signer().private_key,
        algorithm="RS256",
        headers={"kid": signer().kid, **headers},
    )


def with_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split(".")
    return ".".join((b64(json.dumps(header).encode()), payload, signature))


def refusal(token: str) -> str:
    with pytest.raises(jws.MalformedJWS) as caught:
        jws.parse(token)
    return str(caught.value)


def test_a_signed_token_is_read_and_verifies() -> None:
    token = jws.parse(signed({"sub": "learner", "nonce": "n-1"}))

    assert token.header == {"alg": "RS256", "typ": "JWT", "kid": signer().kid}
    assert json.loads(token.payload) == {"sub": "learner", "nonce": "n-1"}
    assert token.verify(public_jwk())


def test_an_altered_payload_does_not_verify() -> None:
    head, _, signature = signed().split(".")
    forged = ".".join((head, b64(b'{"sub":"admin","nonce":"n-1"}'), signature))

    assert not jws.parse(forged).verify(public_jwk())


def test_a_key_bound_to_another_algorithm_does_not_verify() -> None:
    # The header says RS256; a key the platform published for PS256 must not
    # be used with RS256 even though both are RSA.
    assert not jws.parse(signed()).verify(public_jwk("PS256"))


def test_a_header_naming_another_algorithm_than_the_key_does_not_verify() -> None:
    token = with_header(signed(), {"alg": "RS512", "kid": signer().kid})

    assert not jws.parse(token).verify(public_jwk())


def test_an_empty_signature_is_read_but_never_verifies() -> None:
    head, payload, _ = signed().split(".")

    token = jws.parse(f"{head}.{payload}.")

    assert token.signature == b""
    assert not token.verify(public_jwk())


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b", "3 dot-separated parts; this has 2"),
        ("a.b.c.d", "3 dot-separated parts; this has 4"),
        (".eyJ9.c2ln", "the header part is empty"),
        ("eyJhbGciOiJSUzI1NiJ9..c2ln", "the payload part is empty"),
        ("eyJhbGciOiJSUzI1NiJ9.e+J9.c2ln", "payload part is not base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e/J9.c2ln", "payload part is not base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e30=.c2ln", "payload part is not base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e30.c2ln=", "signature part is not base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e 30.c2ln", "payload part is not base64url"),
        ("eyJhbGciOiJSUzI1NiJ9.e3012.c2ln", "impossible base64url length"),
        # "e31" decodes to "{}" like "e30": the unused low bits are not zero.
        ("eyJhbGciOiJSUzI1NiJ9.e31.c2ln", "payload part is not canonical"),
        ("eyJhbGciOiJSUzI1NiJ9.e30.c2l", "signature part is not canonical"),
        ("eyJhbGciOiJSUzI1NiJ9é.e30.c2ln", "non-ASCII"),
    ],
)
def test_unreadable_tokens_are_refused_with_the_part_named(
    token: str, reason: str
) -> None:
    assert reason in refusal(token)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"not json", "the header is not JSON"),
        (b'["RS256"]', "the header is not a JSON object"),
        (b'{"alg":"RS256","crit":["exp"],"exp":1}', "critical extensions"),
        (b'{"alg":"RS256","crit":["b64"],"b64":false}', "critical extensions"),
        (b'{"alg":"RS256","b64":false}', "unencoded payloads"),
        (b'{"alg":"RS256","b64":0}', "unencoded payloads"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "the header is not JSON"),
    ],
)
def test_unusable_headers_are_refused(header: bytes, reason: str) -> None:
    _, payload, signature = signed().split(".")

    assert reason in refusal(f"{b64(header)}.{payload}.{signature}")


def test_canonical_tails_are_exactly_the_zero_bit_endings() -> None:
    # Every last character our reader takes decodes back to itself.
    for tail, characters in jws._CANONICAL_LAST.items():
        for character in jws._ALPHABET:
            segment = b"QUJD"[: tail - 1] + bytes([character])
            padded = segment + b"=" * (-len(segment) % 4)
            round_trip = base64.urlsafe_b64encode(base64.urlsafe_b64decode(padded))
            canonical = round_trip.rstrip(b"=") == segment
            assert (character in characters) is canonical


# --- against PyJWT ------------------------------------------------------------

PYJWT = jwt.PyJWS()


def pyjwt_payload(token: str) -> bytes | None:
    try:
        return PYJWT.decode(token, public_jwk(), algorithms=["RS256"])
    except (jwt.PyJWTError, ValueError, RecursionError):
        return None


def our_payload(token: str) -> bytes | None:
    try:
        parsed = jws.parse(token)
    except jws.MalformedJWS:
        return None
    return parsed.payload if parsed.verify(public_jwk()) else None


ALPHABET_AND_MORE = st.sampled_from(
    list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é\x00")
)


@st.composite
def mutated_tokens(draw: st.DrawFn) -> str:
    token = signed()
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "pad", "header"]))
        at = draw(st.integers(0, len(token) - 1))
        if kind == "replace":
            token = token[:at] + draw(ALPHABET_AND_MORE) + token[at + 1 :]
        elif kind == "insert":
            token = token[:at] + draw(ALPHABET_AND_MORE) + token[at:]
        elif kind == "delete":
            token = token[:at] + token[at + 1 :]
        elif kind == "pad":
            token = token + "=" * draw(st.integers(1, 3))
        else:
            header = draw(
                st.sampled_from(
                    [
                        {"alg": "none", "kid": signer().kid},
                        {"alg": "HS256", "kid": signer().kid},
                        {"alg": "RS256"},
                        {"alg": "RS256", "kid": signer().kid, "b64": False},
                        {"alg": "RS256", "kid": signer().kid, "jku": "x"},
                    ]
                )
            )
            token = with_header(token, header) if token.count(".") == 2 else token
    return token


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(mutated_tokens())
@example(signed())
@example(signed() + "=")
def test_never_accepts_what_pyjwt_refuses_and_agrees_otherwise(token: str) -> None:
    ours, theirs = our_payload(token), pyjwt_payload(token)

    if ours is not None:
        assert theirs == ours
    elif theirs is not None:
        # Stricter on purpose: RFC 7515 base64url has no padding.
        assert "=" in token
