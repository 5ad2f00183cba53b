from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.server import FakeServer

# Variables that could make a test reach a real provider or read a developer's config.
_ISOLATED_PREFIXES = ("FMCLIENT_", "ANTHROPIC_", "OPENAI_", "GEMINI_", "GOOGLE_", "AWS_", "OLLAMA_", "MISTRAL_")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's keys, config file or cwd ``fmclient.toml``."""
    for var in list(os.environ):
        if var.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))  # the CLI's prompt log
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(autouse=True)
def lifecycle_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """The day model retirements are judged by: fixed, before every date fmclient knows, so a test
    that calls gpt-4 or gemini-2.5-flash keeps testing what it tests as the calendar moves on.
    tests/test_aliases.py sets its own days to test retirement itself."""
    import datetime

    from fmclient import deprecations

    monkeypatch.setattr(deprecations, "_today", lambda: datetime.date(2024, 6, 1))


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry layer's waits instead of sleeping them (a fake clock for backoff)."""
    from fmclient import retry

    waits: list[float] = []

    async def record_async(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry, "sleep", waits.append)
    monkeypatch.setattr(retry, "asleep", record_async)
    return waits
