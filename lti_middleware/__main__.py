"""Command line: ``python -m lti_middleware genkey`` makes a tool key pair."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .keys import DEFAULT_KEY_BITS, generate_key


def _genkey(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        print(f"{path} exists; pass --force to replace it", file=sys.stderr)
        return 2

    key = generate_key(args.bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file, readable by its owner only before any secret is written,
    # then renamed over the target: an old file's mode or a symlink there
    # cannot widen who reads the key.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".genkey-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(key.private_pem())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"private key written to {path} (keep it secret)", file=sys.stderr)
    print(json.dumps(key.public_jwk(), indent=2))
    return 0


def _key_bits(text: str) -> int:
    bits = int(text)
    # The middleware refuses keys under 2048 bits; never make one.
    if bits < DEFAULT_KEY_BITS:
        raise argparse.ArgumentTypeError(f"use at least {DEFAULT_KEY_BITS} bits")
    return bits


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lti-middleware`` console script."""
    parser = argparse.ArgumentParser(prog="lti-middleware")
    commands = parser.add_subparsers(dest="command", required=True)
    genkey = commands.add_parser(
        "genkey", help="generate an RSA key pair; print the public JWK"
    )
    genkey.add_argument("--out", default="tool-key.pem", help="private key file")
    genkey.add_argument(
        "--bits",
        type=_key_bits,
        default=DEFAULT_KEY_BITS,
        help=f"RSA key size, at least {DEFAULT_KEY_BITS}",
    )
    genkey.add_argument("--force", action="store_true", help="replace --out")
    genkey.set_defaults(run=_genkey)

    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
