"""Tool keys: generation, loading once, the published set, the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lti_middleware.__main__ import main
from lti_middleware.exceptions import ConfigurationError
from lti_middleware.keys import (
    StaticKeyProvider,
    generate_key,
    load_key,
    load_key_file,
    thumbprint,
)

from .conftest import cached_key


def test_public_jwk_has_no_private_members() -> None:
    jwk = cached_key("tool").public_jwk()
    assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 7638 section 3.1 gives this key and thumbprint as its example.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86z"
        "wu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5Js"
        "GY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMic"
        "AtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
        "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
        "Cur-kEgU8awapJzKnqDKgw"
    )
    numbers = rsa.RSAPublicNumbers(
        e=65537, n=int.from_bytes(jwt.utils.base64url_decode(n), "big")
    )
    assert thumbprint(numbers.public_key()) == (
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )


def test_signed_jwt_kid_is_in_published_set_and_verifies() -> None:
    key = cached_key("tool")
    provider = StaticKeyProvider([key])
    token = jwt.encode({"a": 1}, key.private_key, "RS256", headers={"kid": key.kid})

    published = {k["kid"]: k for k in _run(provider.public_key_set())["keys"]}
    header = jwt.get_unverified_header(token)
    public = jwt.PyJWK(published[header["kid"]])
    assert jwt.decode(token, public.key, algorithms=["RS256"]) == {"a": 1}


def test_rotation_publishes_both_and_newest_signs() -> None:
    new, old = cached_key("rotated"), cached_key("tool")
    provider = StaticKeyProvider([new, old])

    kids = [k["kid"] for k in _run(provider.public_key_set())["keys"]]

    assert kids == [new.kid, old.kid]
    assert _run(provider.signing_key()) is new


def test_duplicate_kids_refused() -> None:
    key = cached_key("tool")
    with pytest.raises(ConfigurationError):
        StaticKeyProvider([key, key])


def test_no_keys_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        StaticKeyProvider([])
    assert error.value.key == "tool.private_key_files"


def test_pem_round_trip_keeps_kid() -> None:
    key = cached_key("tool")
    assert load_key(key.private_pem()).kid == key.kid


def test_unreadable_or_weak_keys_name_their_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    weak = tmp_path / "weak.pem"
    weak.write_bytes(
        rsa.generate_private_key(65537, 1024).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    for path in (garbage, weak, tmp_path / "missing.pem"):
        with pytest.raises(ConfigurationError) as error:
            load_key_file(path)
        assert error.value.key == str(path)


def test_key_repr_hides_the_private_key() -> None:
    assert "PRIVATE" not in repr(cached_key("tool"))
    assert "RSAPrivateKey" not in repr(cached_key("tool"))


def test_cli_generates_a_key_file_and_prints_the_public_jwk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tool.pem"

    assert main(["genkey", "--out", str(out)]) == 0

    jwk = json.loads(capsys.readouterr().out)
    assert jwk["kid"] == load_key_file(out).kid
    assert "d" not in jwk
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert main(["genkey", "--out", str(out)]) == 2


def test_generated_keys_are_distinct() -> None:
    assert generate_key().kid != cached_key("tool").kid


def _run(awaitable):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.run(awaitable)


def test_cli_force_replaces_a_readable_file_with_a_private_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys" / "nested" / "tool.pem"
    out.parent.mkdir(parents=True)
    out.write_text("old")
    out.chmod(0o644)

    assert main(["genkey", "--out", str(out), "--force"]) == 0

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_key_file(out).kid == json.loads(capsys.readouterr().out)["kid"]
    assert [p.name for p in out.parent.iterdir()] == ["tool.pem"]


def test_cli_creates_missing_folders(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "tool.pem"
    assert main(["genkey", "--out", str(out)]) == 0
    assert out.exists()


def test_cli_does_not_write_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    link = tmp_path / "tool.pem"
    link.symlink_to(target)

    assert main(["genkey", "--out", str(link), "--force"]) == 0

    assert target.read_text() == "untouched"
    assert not link.is_symlink()


@pytest.mark.parametrize("bits", ["1024", "512", "many"])
def test_cli_refuses_keys_the_middleware_would_refuse(
    tmp_path: Path, bits: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["genkey", "--out", str(tmp_path / "k.pem"), "--bits", bits])

    assert exit_.value.code == 2
    assert not (tmp_path / "k.pem").exists()
