"""The rotating key provider example: publish, sign with the newest, retire."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import jwt
import pytest

from example_apps.rotating_keys import DirectoryKeyProvider, rotating_keys
from lti_middleware import ConfigurationError, LTIMiddleware
from lti_middleware.assertion import build_client_assertion
from lti_middleware.keys import generate_key

from .conftest import TOOL, Clock, inner_app, registration, tool_config

DAY = 86400.0


def drop_key(directory: Path, name: str, mtime: float) -> str:
    key = generate_key()
    path = directory / f"{name}.pem"
    path.write_bytes(key.private_pem())
    os.utime(path, (mtime, mtime))
    return key.kid


async def kids(provider: DirectoryKeyProvider) -> list[str]:
    return [jwk["kid"] for jwk in (await provider.public_key_set())["keys"]]


async def test_rotation_publishes_first_signs_later_then_retires_the_old(
    tmp_path: Path,
) -> None:
    clock = Clock(1_000_000.0)
    old = drop_key(tmp_path, "2026-11", clock.now - 30 * DAY)
    provider = DirectoryKeyProvider(
        tmp_path, grace_period=DAY, activation_delay=600, clock=clock
    )
    assert await kids(provider) == [old]

    new = drop_key(tmp_path, "2026-12", clock.now)
    clock.now += 61
    while_activating = (await kids(provider), (await provider.signing_key()).kid)
    clock.now += 600
    after_activation = (await kids(provider), (await provider.signing_key()).kid)
    clock.now += DAY
    after_grace = await kids(provider)

    # Published before it signs, so every worker and platform can know it.
    assert while_activating == ([new, old], old)
    assert after_activation == ([new, old], new)
    assert after_grace == [new]


async def test_a_lone_new_key_signs_at_once(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    only = drop_key(tmp_path, "first", clock.now)
    provider = DirectoryKeyProvider(tmp_path, activation_delay=600, clock=clock)
    assert (await provider.signing_key()).kid == only


async def test_new_key_is_not_seen_before_the_rescan_interval(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    old = drop_key(tmp_path, "a", clock.now - DAY)
    provider = DirectoryKeyProvider(tmp_path, rescan_interval=60, clock=clock)

    drop_key(tmp_path, "b", clock.now)
    clock.now += 30

    assert await kids(provider) == [old]


async def test_files_are_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import example_apps.rotating_keys as module

    clock = Clock(1_000_000.0)
    drop_key(tmp_path, "a", clock.now - DAY)
    parsed: list[Path] = []
    real = module.load_key_file

    def counting(path: Path):  # type: ignore[no-untyped-def]
        parsed.append(path)
        return real(path)

    monkeypatch.setattr(module, "load_key_file", counting)
    provider = DirectoryKeyProvider(tmp_path, rescan_interval=1, clock=clock)
    for _ in range(5):
        clock.now += 2
        await provider.signing_key()

    assert len(parsed) == 1


def test_empty_directory_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        DirectoryKeyProvider(tmp_path)
    assert error.value.key == "plugins.rotating_keys.directory"


async def test_plugin_serves_the_rotation_and_signs_with_the_newest(
    tmp_path: Path,
) -> None:
    old = drop_key(tmp_path, "old", 1_000.0)
    new = drop_key(tmp_path, "new", 2_000.0)
    config = tool_config(
        plugin_settings={
            "rotating_keys": {"directory": str(tmp_path), "grace_period": 1e12}
        }
    )
    middleware = LTIMiddleware(inner_app(), config=config, plugins=[rotating_keys])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(middleware), base_url=TOOL)

    published = (await client.get("/lti/jwks")).json()["keys"]
    signer = await middleware.keys.signing_key()
    assertion = build_client_assertion(
        registration=registration(), key=signer, now=1_000_000.0
    )

    assert [k["kid"] for k in published] == [new, old]
    header = jwt.get_unverified_header(assertion)
    assert header["kid"] == new
    public = jwt.PyJWK(published[0]).key
    jwt.decode(
        assertion,
        public,
        algorithms=["RS256"],
        audience=registration().token_url,
        options={"verify_exp": False, "verify_iat": False},
    )
    await client.aclose()


def test_plugin_passes_when_not_configured() -> None:
    assert rotating_keys.lti_key_provider(config=tool_config()) is None


def test_plugin_names_an_unknown_setting(tmp_path: Path) -> None:
    drop_key(tmp_path, "a", 1_000.0)
    config = tool_config(
        plugin_settings={"rotating_keys": {"directory": str(tmp_path), "grace": 1}}
    )
    with pytest.raises(ConfigurationError) as error:
        rotating_keys.lti_key_provider(config=config)
    assert error.value.key == "plugins.rotating_keys.grace"
