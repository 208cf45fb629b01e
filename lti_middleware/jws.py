"""Compact JWS reading for the launch path (RFC 7515 sections 3.1 and 5.2).

The id_token is parsed once, with every per-byte check done by C code
(``bytes.translate``, ``binascii``, ``json``). PyJWT 2.15 checks base64url
one byte at a time in Python and, through ``get_unverified_header`` followed
by ``decode``, would read the token twice: together about two thirds of the
cost of a launch (``benchmarks/validation.py``). PyJWT still does the
cryptography: the key is a ``PyJWK`` and its own algorithm object verifies.

The rules are at least as strict as PyJWT's: three segments, base64url
without padding and in canonical form (so one token has exactly one
spelling), a JSON object header, no critical extensions (a launch uses none,
RFC 7515 4.1.11 says to refuse what is not understood), and the algorithm of
the key, never the one the header asks for, doing the verify.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any

import jwt

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")
_decoder = json.JSONDecoder()

# The last character of a segment whose length is 2 or 3 mod 4 carries bits
# that decode to nothing; canonical encoders leave them zero. Allowing others
# would give one signature several spellings.
_CANONICAL_LAST = {
    2: frozenset(_ALPHABET[index] for index in range(0, 64, 16)),
    3: frozenset(_ALPHABET[index] for index in range(0, 64, 4)),
}


class MalformedJWS(ValueError):
    """The token is not a compact JWS this tool can read; says which part."""


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS split and decoded, its signature not yet checked."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes

    def verify(self, key: jwt.PyJWK) -> bool:
        """True when the signature verifies with ``key``'s own algorithm.

        Callers must already have refused a header alg that is not allowed;
        a key bound to another algorithm than the header names fails here.
        """
        if self.header.get("alg") != key.algorithm_name:
            return False

        # The key object was prepared and checked when the key set was read
        # (platform_keys), so it goes to the algorithm's verify as it is.
        return bool(key.Algorithm.verify(self.signing_input, key.key, self.signature))


def parse(token: str) -> CompactJWS:
    """Split and decode ``token``; raises MalformedJWS naming the fault."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedJWS("the token holds non-ASCII characters") from None

    dots = raw.count(b".")
    if dots != 2:
        raise MalformedJWS(
            f"a compact JWS has 3 dot-separated parts; this has {dots + 1}"
        )
    signing_input, _, signature_part = raw.rpartition(b".")
    header_part, _, payload_part = signing_input.partition(b".")

    header = _header(_segment(header_part, "header"))
    payload = _segment(payload_part, "payload")
    # An empty signature is readable (alg "none" has one); it never verifies,
    # and the caller refuses the algorithm first with its own reason.
    signature = _segment(signature_part, "signature") if signature_part else b""

    return CompactJWS(header, signing_input, payload, signature)


def _segment(part: bytes, name: str) -> bytes:
    if not part:
        raise MalformedJWS(f"the {name} part is empty")
    if part.translate(None, _ALPHABET):
        raise MalformedJWS(
            f"the {name} part is not base64url without padding (RFC 7515 2)"
        )
    tail = len(part) % 4
    if tail == 1:
        raise MalformedJWS(f"the {name} part has an impossible base64url length")
    if tail and part[-1] not in _CANONICAL_LAST[tail]:
        raise MalformedJWS(f"the {name} part is not canonical base64url")

    standard = part.translate(_TO_STANDARD_ALPHABET) + b"=" * (-len(part) % 4)
    return binascii.a2b_base64(standard)


def _header(data: bytes) -> dict[str, Any]:
    try:
        header = _decoder.decode(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise MalformedJWS("the header is not JSON") from error
    if not isinstance(header, dict):
        raise MalformedJWS("the header is not a JSON object")

    if "crit" in header:
        raise MalformedJWS(
            "the header lists critical extensions (crit); none is supported"
        )
    if header.get("b64", True) is not True:
        raise MalformedJWS("unencoded payloads (b64) are not supported")

    return header
