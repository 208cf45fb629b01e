"""The built-in plugin: in-memory stores and keys from the configured files."""

from __future__ import annotations

import logging

from .config import ToolConfig
from .hooks import hookimpl
from .keys import KeyProvider, StaticKeyProvider
from .stores.base import AccessTokenStore, LaunchStore, NonceStore
from .stores.memory import MemoryAccessTokenStore, MemoryLaunchStore, MemoryNonceStore
from .workers import several_workers_sign

logger = logging.getLogger(__name__)


@hookimpl(trylast=True)
def lti_nonce_store(config: ToolConfig) -> NonceStore:
    sign = several_workers_sign()
    if sign is not None:
        logger.warning(
            "lti_middleware keeps login state and nonces in this process's memory, "
            "but %s. Launches will fail when the login and the launch reach "
            "different workers, and replays sent to another worker are not "
            "caught. Configure a shared store ([plugins.redis]) or run one worker.",
            sign,
        )
    return MemoryNonceStore()


@hookimpl(trylast=True)
def lti_launch_store(config: ToolConfig) -> LaunchStore:
    return MemoryLaunchStore()


@hookimpl(trylast=True)
def lti_access_token_store(config: ToolConfig) -> AccessTokenStore:
    return MemoryAccessTokenStore()


@hookimpl(trylast=True)
def lti_key_provider(config: ToolConfig) -> KeyProvider:
    return StaticKeyProvider.from_files(config.private_key_files)
