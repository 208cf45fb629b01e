"""The README stays true to the code: reason codes, hooks, commands."""

from __future__ import annotations

import pathlib

from lti_middleware import hooks
from lti_middleware.exceptions import REASONS

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_reason_code_with_its_status() -> None:
    for reason, meaning in REASONS.items():
        assert f"| `{reason}` | {meaning.status} |" in README, reason


def test_readme_names_every_hook() -> None:
    for name in vars(hooks):
        if name.startswith("lti_"):
            assert f"`{name}`" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
