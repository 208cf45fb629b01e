"""Platform key sets: caching, refetch on a new kid, rate limit, failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from lti_middleware.exceptions import LaunchError
from lti_middleware.platform_keys import PlatformKeySets, cache_lifetime

from .conftest import JWKS_URL, Clock, FakePlatform, ToolClient, cached_key


def key_sets(platform: FakePlatform) -> PlatformKeySets:
    http = httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))
    return PlatformKeySets(http, clock=platform.clock)


async def test_key_set_fetched_once_for_many_launches(
    tool: ToolClient, platform: FakePlatform
) -> None:
    for _ in range(100):
        assert (await tool.launch()).status_code == 303
    assert len(platform.key_set_requests) == 1


async def test_rotated_key_triggers_one_refetch_then_accepts(
    platform: FakePlatform, clock: Clock
) -> None:
    sets = key_sets(platform)
    old, new = platform.key, cached_key("rotated")
    await sets.key_for(JWKS_URL, old.kid, "RS256")

    clock.now += 60
    platform.published = [old, new]
    key = await sets.key_for(JWKS_URL, new.kid, "RS256")

    assert key.key_id == new.kid
    assert len(platform.key_set_requests) == 2


async def test_cached_set_is_refetched_after_its_lifetime(
    platform: FakePlatform, clock: Clock
) -> None:
    sets = key_sets(platform)
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    clock.now += 299
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    clock.now += 2
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    assert len(platform.key_set_requests) == 2


async def test_bogus_kids_share_one_rate_limited_refetch(
    platform: FakePlatform, clock: Clock
) -> None:
    sets = key_sets(platform)
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    clock.now += 31

    results = await asyncio.gather(
        *(sets.key_for(JWKS_URL, "k-bogus", "RS256") for _ in range(10)),
        return_exceptions=True,
    )
    clock.now += 5
    with pytest.raises(LaunchError):
        await sets.key_for(JWKS_URL, "k-bogus", "RS256")

    assert all(
        isinstance(r, LaunchError) and r.reason == "unknown_kid" for r in results
    )
    assert len(platform.key_set_requests) == 2


async def test_cold_cache_concurrent_launches_fetch_once(
    platform: FakePlatform,
) -> None:
    sets = key_sets(platform)
    await asyncio.gather(
        *(sets.key_for(JWKS_URL, platform.key.kid, "RS256") for _ in range(20))
    )
    assert len(platform.key_set_requests) == 1


async def test_old_keys_still_verify_when_refetch_fails(
    platform: FakePlatform, clock: Clock
) -> None:
    sets = key_sets(platform)
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    clock.now += 400
    platform.key_set_down = True

    key = await sets.key_for(JWKS_URL, platform.key.kid, "RS256")

    assert key.key_id == platform.key.kid


async def test_unreachable_key_set_without_cache_refused(
    platform: FakePlatform,
) -> None:
    platform.key_set_down = True
    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, "k", "RS256")
    assert error.value.reason == "key_set_unavailable"


async def test_key_without_alg_is_accepted(platform: FakePlatform) -> None:
    jwk = platform.key.public_jwk()
    del jwk["alg"]
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk]})

    key = await key_sets(platform).key_for(JWKS_URL, platform.key.kid, "RS256")

    assert key.key_id == platform.key.kid


async def test_key_declared_for_another_alg_refused(platform: FakePlatform) -> None:
    jwk = platform.key.public_jwk()
    jwk["alg"] = "RS512"
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk]})

    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, platform.key.kid, "RS256")
    assert error.value.reason == "signature_invalid"


async def test_encryption_keys_are_not_used_for_signatures(
    platform: FakePlatform,
) -> None:
    jwk = platform.key.public_jwk()
    jwk["use"] = "enc"
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk]})

    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, platform.key.kid, "RS256")
    assert error.value.reason == "unknown_kid"


@pytest.mark.parametrize(
    "body", [b"not json", b'{"no_keys": []}', b"[]", b'{"keys": "x"}']
)
async def test_malformed_key_set_is_unavailable(
    platform: FakePlatform, body: bytes
) -> None:
    platform.extra[JWKS_URL] = httpx.Response(200, content=body)
    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, "k", "RS256")
    assert error.value.reason == "key_set_unavailable"


async def test_oversized_key_set_is_refused(platform: FakePlatform) -> None:
    platform.extra[JWKS_URL] = httpx.Response(200, content=b" " * 300_000)
    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, "k", "RS256")
    assert error.value.reason == "key_set_unavailable"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 300.0),
        ("max-age=3600", 3600.0),
        ("public, max-age=5", 30.0),
        ("max-age=99999999", 86400.0),
        ("no-store", 30.0),
        ("private", 300.0),
    ],
)
def test_cache_lifetime_follows_cache_control(
    header: str | None, seconds: float
) -> None:
    assert cache_lifetime(header) == seconds


async def test_max_age_from_platform_is_honoured(
    platform: FakePlatform, clock: Clock
) -> None:
    platform.key_set_headers = {"Cache-Control": "max-age=3600"}
    sets = key_sets(platform)
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    clock.now += 3000
    await sets.key_for(JWKS_URL, platform.key.kid, "RS256")
    assert len(platform.key_set_requests) == 1


async def test_duplicate_kid_is_not_used(platform: FakePlatform) -> None:
    jwk = platform.key.public_jwk()
    other = cached_key("stranger").public_jwk()
    other["kid"] = jwk["kid"]
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk, other]})

    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, platform.key.kid, "RS256")
    assert error.value.reason == "unknown_kid"


async def test_key_limited_to_encryption_by_key_ops_is_not_used(
    platform: FakePlatform,
) -> None:
    jwk: dict[str, object] = dict(platform.key.public_jwk())
    jwk["key_ops"] = ["encrypt"]
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk]})

    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, platform.key.kid, "RS256")
    assert error.value.reason == "unknown_kid"


async def test_weak_rsa_key_is_refused(platform: FakePlatform) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True)
    jwk["kid"] = "weak"
    platform.extra[JWKS_URL] = httpx.Response(200, json={"keys": [jwk]})

    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, "weak", "RS256")
    assert error.value.reason == "signature_invalid"
    assert "1024 bits" in error.value.detail


async def test_deeply_nested_key_set_is_unavailable(platform: FakePlatform) -> None:
    nested = b'{"keys": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    platform.extra[JWKS_URL] = httpx.Response(200, content=nested)
    with pytest.raises(LaunchError) as error:
        await key_sets(platform).key_for(JWKS_URL, "k", "RS256")
    assert error.value.reason == "key_set_unavailable"


async def test_a_failed_fetch_is_not_repeated_within_the_interval(
    platform: FakePlatform, clock: Clock
) -> None:
    platform.key_set_down = True
    sets = key_sets(platform)
    for _ in range(5):
        with pytest.raises(LaunchError) as error:
            await sets.key_for(JWKS_URL, "forged", "RS256")
        assert error.value.reason == "key_set_unavailable"
    clock.now += 31
    platform.key_set_down = False
    key = await sets.key_for(JWKS_URL, platform.key.kid, "RS256")

    assert key.key_id == platform.key.kid
    assert len(platform.key_set_requests) == 2


async def test_concurrent_first_launches_share_a_slow_fetch(
    platform: FakePlatform,
) -> None:
    # The first fetch is still in flight when the others arrive: they wait for
    # it rather than being refused by the refetch limit.
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return platform.handle(request)

    sets = PlatformKeySets(
        httpx.AsyncClient(transport=httpx.MockTransport(slow)), clock=platform.clock
    )
    lookups = [
        asyncio.ensure_future(sets.key_for(JWKS_URL, platform.key.kid, "RS256"))
        for _ in range(10)
    ]
    await asyncio.sleep(0)
    release.set()
    keys = await asyncio.gather(*lookups)

    assert {key.key_id for key in keys} == {platform.key.kid}
    assert len(platform.key_set_requests) == 1
