"""Hook specifications: how plugins supply stores, keys and error pages.

Each middleware owns a pluggy PluginManager; the in-memory stores and the file
key provider are registered as ordinary ``trylast`` plugins, so any plugin that
answers wins. Third-party plugins are found through the ``lti_middleware``
entry-point group when the middleware is built with ``load_entry_points=True``.
pluggy is synchronous, so store and key hooks are factories, called once at
start-up, that return objects with async methods. Hooks are called with keywords.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import Registration, ToolConfig
    from .exceptions import LaunchError
    from .keys import KeyProvider
    from .stores.base import AccessTokenStore, LaunchStore, NonceStore

PROJECT_NAME = "lti_middleware"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def lti_nonce_store(config: ToolConfig) -> NonceStore | None:
    """Return the store for login states and nonces, or None to pass.

    Called once when the middleware is built. Its ``consume`` must be atomic
    across every process that serves launches for this tool.
    """


@hookspec(firstresult=True)
def lti_launch_store(config: ToolConfig) -> LaunchStore | None:
    """Return the store that keeps validated launches, or None to pass.

    Called once when the middleware is built.
    """


@hookspec(firstresult=True)
def lti_access_token_store(config: ToolConfig) -> AccessTokenStore | None:
    """Return the cache for OAuth2 access tokens, or None to pass.

    Called once when the middleware is built.
    """


@hookspec(firstresult=True)
def lti_key_provider(config: ToolConfig) -> KeyProvider | None:
    """Return the provider of the tool's signing keys, or None to pass.

    Called once when the middleware is built. The provider's keys sign client
    assertions and are published at the tool's JWKS URL.
    """


@hookspec(firstresult=True)
def lti_accept_deployment(
    registration: Registration, deployment_id: str
) -> bool | None:
    """Decide on a deployment_id the registration does not list.

    Called during a launch only after the signature and every claim before the
    deployment check have passed. Return True to accept (and record it, if the
    plugin keeps deployments), False to refuse, None to leave it to
    ``deployment_policy``.
    """


@hookspec(firstresult=True)
def lti_error_response(error: LaunchError, accept: str) -> Any:
    """Return an ASGI response for a refused login or launch, or None to pass.

    ``accept`` is the request's Accept header. The default renders an escaped
    HTML page or JSON naming the reason code, the cause and what to do.
    """
