"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run for this test's screenshots.

    ``$LTI_TEST_ARTIFACTS`` or ``test-artifacts/`` in the repository, one
    sub-folder per test, so CI (and a person) can look at what the browser saw.
    """
    base = Path(os.environ.get("LTI_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
