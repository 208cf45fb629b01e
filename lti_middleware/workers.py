"""Guessing whether this process is one of several workers serving the tool.

In-memory stores are right for one process only: a login handled by one
worker and its launch by another fails with ``state_unknown``, and a replay
sent to another worker is not caught. We cannot know the deployment, so we
look for the usual signs and warn at start-up.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

_MULTI_WORKER_SERVERS = ("gunicorn", "hypercorn", "uvicorn", "granian", "daphne")


def several_workers_sign() -> str | None:
    """A sentence naming why several workers seem to run, or None."""
    concurrency = os.environ.get("WEB_CONCURRENCY", "")
    if concurrency.isdigit() and int(concurrency) > 1:
        return f"WEB_CONCURRENCY is {concurrency}"

    parent = _parent_command()
    # uvicorn's reloader also spawns its one server through multiprocessing.
    reloading = "--reload" in parent
    if multiprocessing.parent_process() is not None and not reloading:
        return "this process was spawned by a worker manager (uvicorn --workers)"

    if parent and any(server in parent for server in _MULTI_WORKER_SERVERS):
        if "--workers" in parent or " -w " in f" {parent} ":
            return f"the parent process runs {parent[:120]!r}"

    return None


def _parent_command() -> str:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
