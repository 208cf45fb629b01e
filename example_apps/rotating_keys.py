"""A key provider plugin that rotates keys found in a directory.

The worked example for writing a key provider. Drop a new PEM key into the
directory (``python -m lti_middleware genkey --out keys/2027-01.pem``) and:

- it is published and signs from the next rescan on (the newest key signs);
- the key it replaces stays published for ``grace_period`` seconds, so a
  platform that cached our key set can still verify what the old key signed
  and has time to refetch; after that it is retired: no longer published;
- nothing restarts: the directory is rescanned at most every
  ``rescan_interval`` seconds, and each file is parsed once (parsing a PEM key
  with validation costs tens of milliseconds).

A key's age is its file's modification time. Enable it with::

    [plugins.rotating_keys]
    directory = "keys"          # relative to the working directory
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


@dataclass(frozen=True)
class _Loaded:
    key: ToolKey
    mtime: float


class DirectoryKeyProvider:
    """Keys from ``*.pem`` files in a directory; the newest signs."""

    def __init__(
        self,
        directory: Path,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        rescan_interval: float = DEFAULT_RESCAN_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = Path(directory)
        self._grace_period = grace_period
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
        return (await self._current())[0].key

    async def public_key_set(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [loaded.key.public_jwk() for loaded in await self._current()]}

    async def _current(self) -> list[_Loaded]:
        """Published keys, newest first."""
        now = self._clock()
        if self._scanned_at is None or now - self._scanned_at >= self._rescan_interval:
            async with self._lock:
                await asyncio.to_thread(self._rescan)

        return self._published(now)

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

    def _published(self, now: float) -> list[_Loaded]:
        keys = sorted(self._loaded.values(), key=lambda k: k.mtime, reverse=True)
        published = [keys[0]]
        # Each older key stays until grace_period after the key that replaced it.
        for older, newer in zip(keys[1:], keys, strict=False):
            if now - newer.mtime >= self._grace_period:
                break
            published.append(older)

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
        unknown = sorted(set(settings) - {"grace_period", "rescan_interval"})
        if unknown:
            raise ConfigurationError(f"plugins.rotating_keys.{unknown[0]}", "unknown")

        return DirectoryKeyProvider(
            Path(directory),
            grace_period=float(settings.get("grace_period", DEFAULT_GRACE_PERIOD)),
            rescan_interval=float(
                settings.get("rescan_interval", DEFAULT_RESCAN_INTERVAL)
            ),
        )


rotating_keys = RotatingKeysPlugin()
