"""The built-in plugin: in-memory stores and keys from the configured files."""

from __future__ import annotations

from .config import ToolConfig
from .hooks import hookimpl
from .keys import KeyProvider, StaticKeyProvider
from .stores.base import AccessTokenStore, LaunchStore, NonceStore
from .stores.memory import MemoryAccessTokenStore, MemoryLaunchStore, MemoryNonceStore


@hookimpl(trylast=True)
def lti_nonce_store(config: ToolConfig) -> NonceStore:
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
