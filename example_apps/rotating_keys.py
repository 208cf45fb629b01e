"""A key provider plugin that rotates keys found in a directory.

The worked example for writing a key provider. Drop a new PEM key into the
directory (``python -m lti_middleware genkey --out keys/2027-01.pem``) and:

- it is published from the next rescan on, but signs only once it is
  ``activation_delay`` seconds old: by then every worker has rescanned and
  publishes it, and platforms that cache our key set have had time to see it;
- from then on the newest active key signs; the key it replaces stays
  published for ``grace_period`` seconds more, so what the old key signed
  still verifies; after that it is retired: no longer published;
- nothing restarts: the directory is rescanned at most every
  ``rescan_interval`` seconds, and each file is parsed once (parsing a PEM key
  with validation costs tens of milliseconds).

A key's age is its file's modification time. Enable it with::

    [plugins.rotating_keys]
    directory = "keys"          # relative to the working directory
    activation_delay = 600      # seconds a new key is published before it signs
    grace_period = 86400        # seconds the replaced key stays published
    rescan_interval = 60

and ``LTIMiddleware(app, config=config, plugins=[rotating_keys])``, or an entry
point in the ``lti_middleware`` group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lti_middleware import ConfigurationError, ToolConfig, ToolKey, hookimpl
from lti_middleware.keys import load_key_file

logger = logging.getLogger(__name__)

DEFAULT_GRACE_PERIOD = 24 * 3600.0
DEFAULT_RESCAN_INTERVAL = 60.0
DEFAULT_ACTIVATION_DELAY = 600.0


@dataclass(frozen=True)
class _Loaded:
    key: ToolKey
    mtime: float


class DirectoryKeyProvider:
    """Keys from ``*.pem`` files in a directory; the newest active key signs."""

    def __init__(
        self,
        directory: Path,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        rescan_interval: float = DEFAULT_RESCAN_INTERVAL,
        activation_delay: float = DEFAULT_ACTIVATION_DELAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = Path(directory)
        self._grace_period = grace_period
        self._activation_delay = activation_delay
        self._rescan_interval = rescan_interval
        self._clock = clock
        self._loaded: dict[Path, _Loaded] = {}
        self._scanned_at: float | None = None
        self._lock = asyncio.Lock()
        self._rescan()
        if not self._loaded:
            raise ConfigurationError(
                "plugins.rotating_keys.directory", f"no *.pem key in {self._directory}"
            )

    async def signing_key(self) -> ToolKey:
        now = await self._rescanned()
        return self._signer(self._newest_first(), now).key

    async def public_key_set(self) -> dict[str, list[dict[str, str]]]:
        now = await self._rescanned()
        return {"keys": [loaded.key.public_jwk() for loaded in self._published(now)]}

    async def _rescanned(self) -> float:
        now = self._clock()
        if self._scanned_at is None or now - self._scanned_at >= self._rescan_interval:
            async with self._lock:
                await asyncio.to_thread(self._rescan)
        return now

    def _rescan(self) -> None:
        found: dict[Path, _Loaded] = {}
        for path in sorted(self._directory.glob("*.pem")):
            mtime = path.stat().st_mtime
            known = self._loaded.get(path)
            if known is not None and known.mtime == mtime:
                found[path] = known
                continue
            found[path] = _Loaded(load_key_file(path), mtime)
            logger.info("loaded tool key %s from %s", found[path].key.kid, path.name)

        if found:
            self._loaded = found
        self._scanned_at = self._clock()

    def _newest_first(self) -> list[_Loaded]:
        return sorted(self._loaded.values(), key=lambda k: k.mtime, reverse=True)

    def _signer(self, keys: list[_Loaded], now: float) -> _Loaded:
        # The newest key old enough to be known everywhere; with none that
        # old (a first start), the oldest there is.
        for loaded in keys:
            if now - loaded.mtime >= self._activation_delay:
                return loaded
        return keys[-1]

    def _published(self, now: float) -> list[_Loaded]:
        keys = self._newest_first()
        signer = self._signer(keys, now)
        # Keys newer than the signer are waiting to activate; the signer;
        # then each older key until grace_period after its successor began
        # signing.
        published = keys[: keys.index(signer) + 1]
        successor = signer
        for older in keys[keys.index(signer) + 1 :]:
            activated = successor.mtime + self._activation_delay
            if now - activated >= self._grace_period:
                break
            published.append(older)
            successor = older

        return published


class RotatingKeysPlugin:
    """Supplies a DirectoryKeyProvider when ``[plugins.rotating_keys]`` is set."""

    name = "rotating_keys"

    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> DirectoryKeyProvider | None:
        settings: dict[str, Any] = dict(config.plugin_settings.get("rotating_keys", {}))
        if not settings:
            return None
        directory = settings.pop("directory", None)
        if not isinstance(directory, str):
            raise ConfigurationError(
                "plugins.rotating_keys.directory", "expected a directory path"
            )
        allowed = {"grace_period", "rescan_interval", "activation_delay"}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise ConfigurationError(f"plugins.rotating_keys.{unknown[0]}", "unknown")

        return DirectoryKeyProvider(
            Path(directory),
            grace_period=float(settings.get("grace_period", DEFAULT_GRACE_PERIOD)),
            rescan_interval=float(
                settings.get("rescan_interval", DEFAULT_RESCAN_INTERVAL)
            ),
            activation_delay=float(
                settings.get("activation_delay", DEFAULT_ACTIVATION_DELAY)
            ),
        )


rotating_keys = RotatingKeysPlugin()
