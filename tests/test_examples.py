"""Every program in examples/ runs, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.mark.slow
def test_first_call_is_answered_offline_by_the_embedded_model() -> None:
    out = run(str(EXAMPLES / "first_call.py"))
    assert out.returncode == 0, out.stderr
    answer, footer = out.stdout.strip().rsplit("\n", 1)
    assert answer.strip()
    assert footer.startswith("-- llamacpp/SmolLM2-135M-Instruct")


@pytest.mark.slow
def test_streaming_example_prints_text_then_the_summary() -> None:
    out = run(str(EXAMPLES / "streaming.py"))
    assert out.returncode == 0, out.stderr
    assert "-- finish_reason=" in out.stdout
    assert out.stdout.split("-- finish_reason=")[0].strip()


@pytest.mark.slow
def test_switch_provider_by_env_var_with_no_code_change() -> None:
    script = str(EXAMPLES / "switch_provider.py")
    unconfigured = run(script)
    assert unconfigured.returncode == 1
    assert "ANTHROPIC_API_KEY" in unconfigured.stderr
    local = run(script, env={"FMCLIENT_ALIAS_CLAUDE_SONNET": "llamacpp/smollm2-135m-instruct"})
    assert local.returncode == 0, local.stderr
    assert local.stdout.startswith("llamacpp/")


def test_the_app_test_example_passes_with_the_mock() -> None:
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "test_app_with_mock.py"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout


def test_agent_loop_runs_two_steps_of_tools_then_answers() -> None:
    out = run(str(EXAMPLES / "agent_loop.py"), "--offline")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[:3] == [
        "step 1: get_weather({'city': 'Oslo'}) -> 3C and sunny",
        "step 1: get_weather({'city': 'Rome'}) -> 18C and cloudy",
        "step 2: convert({'celsius': 3}) -> 37.4",
    ]
    assert lines[-1].startswith("-- stopped=answer, steps=3")


def test_mcp_time_example_calls_the_real_time_server() -> None:
    pytest.importorskip("mcp_server_time")
    out = run(str(EXAMPLES / "mcp_time.py"), "--offline")
    assert out.returncode == 0, out.stderr
    assert "tools: time_get_current_time, time_convert_time" in out.stdout
    assert '"timezone": "Asia/Tokyo"' in out.stdout  # the server's own answer
    assert out.stdout.strip().endswith("-- stopped=answer, steps=2")
