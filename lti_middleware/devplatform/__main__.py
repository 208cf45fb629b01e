"""Run the development platform alone: ``python -m lti_middleware.devplatform``.

It listens on 127.0.0.1 only, prints its URLs and a ``[[platforms]]`` block
to paste into the tool's TOML configuration, then serves until stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..exceptions import ConfigurationError
from ..keys import load_key_file
from .app import create_platform
from .settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_DEPLOYMENT_ID,
    DEFAULT_TOOL_BASE,
    PlatformSettings,
    tool_registration_toml,
)

HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m lti_middleware.devplatform",
        description="Run a development LTI 1.3 platform on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--tool-base",
        default=DEFAULT_TOOL_BASE,
        help="the tool's origin; it serves /lti/login, /lti/launch, /lti/jwks",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--deployment-id", default=DEFAULT_DEPLOYMENT_ID)
    parser.add_argument(
        "--token-audience",
        default=None,
        help="require this aud in client assertions instead of the token URL",
    )
    parser.add_argument("--login-method", choices=("GET", "POST"), default="GET")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="PEM private key to sign id_tokens (default: a new key each run)",
    )

    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace) -> PlatformSettings:
    """Platform settings from parsed options; raises ConfigurationError."""
    key = load_key_file(args.key_file) if args.key_file else None

    return PlatformSettings.for_tool(
        args.tool_base,
        base_url=f"http://{HOST}:{args.port}",
        client_id=args.client_id,
        deployment_id=args.deployment_id,
        token_audience=args.token_audience,
        login_method=args.login_method,
        key=key,
    )


def describe(settings: PlatformSettings) -> str:
    """The URLs and the tool's TOML block, as printed at start-up."""
    return (
        f"Development LTI platform at {settings.home_url}\n"
        f"  issuer          {settings.issuer}\n"
        f"  auth_login_url  {settings.auth_login_url}\n"
        f"  token_url       {settings.token_url}\n"
        f"  key_set_url     {settings.key_set_url}\n"
        f"  gradebook       {settings.gradebook_url}\n"
        f"  stats           {settings.stats_url}\n"
        f"Tool login {settings.tool_login_url}, redirect "
        f"{', '.join(settings.tool_redirect_uris)}, key set {settings.tool_jwks_url}\n"
        "\nAdd this to the tool's TOML configuration:\n\n"
        + tool_registration_toml(settings)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the settings and serve until interrupted; returns an exit code."""
    args = parse_args(argv)
    try:
        settings = build_settings(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print(
            "error: uvicorn is needed: pip install 'lti-middleware[demo]'",
            file=sys.stderr,
        )
        return 2

    print(describe(settings), flush=True)
    uvicorn.run(create_platform(settings), host=HOST, port=args.port)

    return 0


if __name__ == "__main__":
    sys.exit(main())
