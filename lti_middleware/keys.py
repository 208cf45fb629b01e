"""The tool's own signing keys and the public key set it publishes.

Private keys are parsed once, when a provider is built: loading a PEM with
validation costs tens of milliseconds, far too much per request. Every JWT the
tool signs names its key with a ``kid`` that the published key set also lists
(Canvas and D2L look keys up by ``kid`` and try no other).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .exceptions import ConfigurationError

DEFAULT_KEY_BITS = 2048
_PUBLIC_MEMBERS = ("kty", "n", "e", "kid", "alg", "use")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA public key, used as its kid."""
    numbers = public_key.public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    canonical = json.dumps(
        {"e": _b64url(e), "kty": "RSA", "n": _b64url(n)},
        separators=(",", ":"),
        sort_keys=True,
    )

    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True)
class ToolKey:
    """A private signing key with its kid and algorithm."""

    kid: str
    private_key: rsa.RSAPrivateKey
    alg: str = "RS256"

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK: kty, n, e, kid, alg, use; no private member."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(
            self.private_key.public_key(), as_dict=True
        )
        jwk.update(kid=self.kid, alg=self.alg, use="sig")

        return {name: str(jwk[name]) for name in _PUBLIC_MEMBERS}

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"ToolKey(kid={self.kid!r}, alg={self.alg!r})"


def generate_key(bits: int = DEFAULT_KEY_BITS) -> ToolKey:
    """Create a new RSA key; its kid is its RFC 7638 thumbprint."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)

    return ToolKey(kid=thumbprint(private_key.public_key()), private_key=private_key)


def load_key(pem: bytes, *, kid: str | None = None, source: str = "key") -> ToolKey:
    """Parse an RSA private key from PEM; raises ConfigurationError naming ``source``."""
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConfigurationError(
            source, f"not a readable PEM private key: {error}"
        ) from error
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigurationError(source, "only RSA keys are supported for RS256")
    if private_key.key_size < DEFAULT_KEY_BITS:
        raise ConfigurationError(
            source, f"RSA key of {private_key.key_size} bits; use at least 2048"
        )

    return ToolKey(
        kid=kid or thumbprint(private_key.public_key()), private_key=private_key
    )


def load_key_file(path: Path) -> ToolKey:
    """Read one PEM private key file."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(str(path), f"cannot read key file: {error}") from error

    return load_key(pem, source=str(path))


@runtime_checkable
class KeyProvider(Protocol):
    """Gives the tool's signing key and the public key set to publish."""

    async def signing_key(self) -> ToolKey:
        """The key that signs new JWTs; it must be in the published set."""
        ...

    async def public_key_set(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document to serve: ``{"keys": [...]}`` with public members only."""
        ...


class StaticKeyProvider:
    """Keys fixed at start-up; the first signs, all are published.

    Publishing a retiring or incoming key beside the signing key lets a
    platform that caches our key set keep verifying during a rotation.
    """

    def __init__(self, keys: Sequence[ToolKey]) -> None:
        if not keys:
            raise ConfigurationError("tool.private_key_files", "no signing key given")
        kids = [key.kid for key in keys]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("tool.private_key_files", "two keys share a kid")

        self._keys = tuple(keys)
        self._key_set = {"keys": [key.public_jwk() for key in self._keys]}

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> StaticKeyProvider:
        """Load PEM files, newest first."""
        return cls([load_key_file(path) for path in paths])

    async def signing_key(self) -> ToolKey:
        return self._keys[0]

    async def public_key_set(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [dict(jwk) for jwk in self._key_set["keys"]]}
