"""Stores for login state, nonces, launches and access tokens."""

from .base import AccessTokenStore, Consumed, LaunchStore, NonceStore
from .memory import MemoryAccessTokenStore, MemoryLaunchStore, MemoryNonceStore

__all__ = [
    "AccessTokenStore",
    "Consumed",
    "LaunchStore",
    "MemoryAccessTokenStore",
    "MemoryLaunchStore",
    "MemoryNonceStore",
    "NonceStore",
]
