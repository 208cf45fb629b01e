"""Signs of several workers, for the in-memory store's start-up warning."""

from __future__ import annotations

import multiprocessing

import pytest

from lti_middleware import workers


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    monkeypatch.setattr(workers, "_parent_command", lambda: "bash")


def test_one_plain_process_shows_no_sign() -> None:
    assert workers.several_workers_sign() is None


def test_web_concurrency_above_one_is_a_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert workers.several_workers_sign() == "WEB_CONCURRENCY is 3"


def test_a_spawned_worker_is_a_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    monkeypatch.setattr(
        workers, "_parent_command", lambda: "python -m uvicorn app:app --workers 4"
    )
    assert "spawned" in (workers.several_workers_sign() or "")


def test_the_reloaders_single_server_is_not_a_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    monkeypatch.setattr(
        workers, "_parent_command", lambda: "python -m uvicorn app:app --reload"
    )
    assert workers.several_workers_sign() is None


def test_a_gunicorn_parent_with_workers_is_a_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        workers, "_parent_command", lambda: "gunicorn -w 4 -k uvicorn.workers app"
    )
    assert "gunicorn" in (workers.several_workers_sign() or "")
