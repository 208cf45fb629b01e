"""Client assertions for the token endpoint (RFC 7523, CASE-10, CASE-11, CASE-12)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from lti_middleware.assertion import assertion_audience, build_client_assertion
from lti_middleware.config import Registration
from lti_middleware.keys import StaticKeyProvider, ToolKey, generate_key

NOW = 1_700_000_000.0
TOKEN_URL = "https://lms.example.edu/login/oauth2/token"
D2L_TOKEN_URL = "https://auth.lms-vendor.example/core/connect/token"
D2L_AUDIENCE = "https://api.lms-vendor.example/auth/token"


def make_registration(**overrides: Any) -> Registration:
    values: dict[str, Any] = {
        "issuer": "https://lms.example.edu",
        "client_id": "10000000000042",
        "deployment_ids": ("1:abc",),
        "auth_login_url": "https://lms.example.edu/api/lti/authorize_redirect",
        "token_url": TOKEN_URL,
        "key_set_url": "https://lms.example.edu/api/lti/security/jwks",
    }
    values.update(overrides)
    return Registration(**values)


@pytest.fixture(scope="module")
def key() -> ToolKey:
    return generate_key()


def verify(token: str, jwk: dict[str, str], audience: str) -> dict[str, Any]:
    public = jwt.PyJWK(jwk).key
    # NOW is fixed in the past; exp is checked by value in the tests.
    claims: dict[str, Any] = jwt.decode(
        token,
        public,
        algorithms=[jwk["alg"]],
        audience=audience,
        options={"verify_exp": False},
    )
    return claims


def test_assertion_claims_follow_rfc_7523(key: ToolKey) -> None:
    registration = make_registration()

    token = build_client_assertion(registration=registration, key=key, now=NOW)
    claims = verify(token, key.public_jwk(), TOKEN_URL)

    assert claims["iss"] == claims["sub"] == "10000000000042"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(NOW)
    assert claims["exp"] == int(NOW) + 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_assertion_header_names_published_kid_and_key_alg(key: ToolKey) -> None:
    token = build_client_assertion(registration=make_registration(), key=key, now=NOW)

    header = jwt.get_unverified_header(token)
    assert header["kid"] == key.kid == key.public_jwk()["kid"]
    assert header["alg"] == key.alg == "RS256"


async def test_assertion_kid_is_in_key_set_during_rotation(key: ToolKey) -> None:
    provider = StaticKeyProvider([generate_key(), key])
    published = (await provider.public_key_set())["keys"]
    signing = await provider.signing_key()

    token = build_client_assertion(
        registration=make_registration(), key=signing, now=NOW
    )

    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(jwk for jwk in published if jwk["kid"] == kid)
    assert verify(token, jwk, TOKEN_URL)["sub"] == "10000000000042"


def test_assertion_audience_is_declared_token_audience(key: ToolKey) -> None:
    registration = make_registration(
        client_id="6f1e2a4b-0000-4000-8000-00000000abcd",
        token_url=D2L_TOKEN_URL,
        token_audience=D2L_AUDIENCE,
    )

    token = build_client_assertion(registration=registration, key=key, now=NOW)

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == D2L_AUDIENCE
    assert assertion_audience(registration) == D2L_AUDIENCE
    assert claims["iss"] == claims["sub"] == "6f1e2a4b-0000-4000-8000-00000000abcd"


def test_assertion_audience_is_a_single_string(key: ToolKey) -> None:
    for registration in (
        make_registration(),
        make_registration(token_url=D2L_TOKEN_URL, token_audience=D2L_AUDIENCE),
    ):
        token = build_client_assertion(registration=registration, key=key, now=NOW)

        assert isinstance(
            jwt.decode(token, options={"verify_signature": False})["aud"], str
        )


def test_assertion_jti_is_unique(key: ToolKey) -> None:
    registration = make_registration()

    tokens = [
        build_client_assertion(registration=registration, key=key, now=NOW)
        for _ in range(2)
    ]

    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 2


def test_assertion_uses_given_jti_and_lifetime(key: ToolKey) -> None:
    token = build_client_assertion(
        registration=make_registration(), key=key, now=NOW, lifetime=60, jti="abc"
    )

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["jti"] == "abc"
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("lifetime", [0, -5, float("nan"), float("inf")])
def test_assertion_rejects_lifetime_that_is_not_positive(
    key: ToolKey, lifetime: float
) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        build_client_assertion(
            registration=make_registration(), key=key, now=NOW, lifetime=lifetime
        )


def test_assertion_alg_follows_the_key(key: ToolKey) -> None:
    pss_key = ToolKey(kid="pss-1", private_key=key.private_key, alg="PS256")

    token = build_client_assertion(
        registration=make_registration(), key=pss_key, now=NOW
    )

    assert jwt.get_unverified_header(token)["alg"] == "PS256"
    assert verify(token, pss_key.public_jwk(), TOKEN_URL)["iss"] == "10000000000042"


def test_assertion_does_not_verify_with_another_key(key: ToolKey) -> None:
    token = build_client_assertion(registration=make_registration(), key=key, now=NOW)

    with pytest.raises(jwt.InvalidSignatureError):
        verify(token, generate_key().public_jwk(), TOKEN_URL)


def test_assertion_signs_without_parsing_pem(
    key: ToolKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the private key was parsed again")

    monkeypatch.setattr(jwt.algorithms, "load_pem_private_key", refuse)

    token = build_client_assertion(registration=make_registration(), key=key, now=NOW)

    assert verify(token, key.public_jwk(), TOKEN_URL)["aud"] == TOKEN_URL
