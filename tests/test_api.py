"""The public API: what the package exports, and the hooks it documents."""

from __future__ import annotations

import ast
import inspect
import pathlib
from importlib import metadata
from typing import Any

import pytest

import lti_middleware
from lti_middleware import hooks
from lti_middleware.middleware import build_plugin_manager


def test_all_is_sorted_and_matches_the_imports() -> None:
    source = pathlib.Path(lti_middleware.__file__).read_text()
    imported = {
        alias.asname or alias.name
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert lti_middleware.__all__ == sorted(lti_middleware.__all__)
    assert set(lti_middleware.__all__) == imported


def _hook_names() -> list[str]:
    return [name for name in vars(hooks) if name.startswith("lti_")]


def test_every_hook_is_documented_and_named_lti() -> None:
    manager = build_plugin_manager()
    specs = [name for name in dir(manager.hook) if not name.startswith("_")]
    assert sorted(specs) == sorted(_hook_names())
    for name in _hook_names():
        doc = inspect.getdoc(getattr(hooks, name)) or ""
        assert "Return" in doc, name


def test_every_hook_is_exercised_by_a_test() -> None:
    tests = "".join(
        p.read_text()
        for p in pathlib.Path(__file__).parent.rglob("*.py")
        if p.name.startswith("test_") or p.name == "conftest.py"
    )
    untested = [name for name in _hook_names() if f"def {name}(" not in tests]
    assert untested == []


class FakeEntryPoint:
    name = "example"
    group = hooks.PROJECT_NAME
    value = "example:plugin"

    def __init__(self, plugin: object) -> None:
        self.plugin = plugin

    def load(self) -> object:
        return self.plugin


def test_entry_points_load_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plugin:
        @hooks.hookimpl
        def lti_accept_deployment(self, registration: Any, deployment_id: str) -> bool:
            return True

    entry = FakeEntryPoint(Plugin())

    class Distribution:
        entry_points = [entry]
        metadata = {"name": "example-plugin"}

    monkeypatch.setattr(metadata, "distributions", lambda: [Distribution()])

    without = build_plugin_manager()
    with_entry_points = build_plugin_manager(load_entry_points=True)

    assert without.get_plugin("example") is None
    assert with_entry_points.get_plugin("example") is entry.plugin
