"""The `fmclient` console script, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FMCLIENT = shutil.which("fmclient", path=str(Path(sys.executable).parent)) or "fmclient"


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FMCLIENT, *args], input=stdin, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def assert_one_clean_error_line(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0]


def test_complete_streams_the_answer() -> None:
    out = cli("complete", "hello", "-m", "mock/any")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "mock response\n"


def test_complete_reads_the_prompt_from_stdin() -> None:
    out = cli("complete", "-m", "mock/any", "--no-stream", stdin="from stdin\n")
    assert (out.returncode, out.stdout) == (0, "mock response\n")


def test_complete_json_is_the_whole_completion() -> None:
    out = cli(
        "complete", "one two", "-m", "mock/echo", "--json", "--system", "be brief", "--max-tokens", "5", "-t", "0.2"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["text"] == "mock response"
    assert (data["provider"], data["model"], data["finish_reason"]) == ("mock", "echo", "stop")
    assert data["usage"] == {
        "input_tokens": 4,
        "output_tokens": 2,
        "total_tokens": 6,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    # The built-in mock provider has no prices: unknown, with the reason, never 0.
    assert data["cost"] is None and "no price table for provider type 'mock'" in data["cost_reason"]


def test_embed_prints_json_lines_in_order() -> None:
    out = cli("embed", "first", "second", "-m", "mock/emb")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["first", "second"]
    assert all(len(r["embedding"]) == 8 for r in rows)


def test_models_lists_every_alias_with_target_and_readiness() -> None:
    out = cli("models", env={"FMCLIENT_ALIAS_GPT_4O": "mock/gpt"})
    assert out.returncode == 0, out.stderr
    lines = {
        line.split()[0].lstrip("*"): line
        for line in out.stdout.splitlines()
        if line.strip() and not line.startswith("\n")
    }
    for alias in ("claude-sonnet", "gpt-4o", "titan-embed", "llama-local", "mistral-large"):
        assert any(alias in line for line in out.stdout.splitlines()), alias
    gpt = next(line for line in out.stdout.splitlines() if " gpt-4o " in f" {line} ")
    assert "mock/gpt" in gpt and gpt.rstrip().endswith("ready")
    assert "default model: llama-local" in out.stdout
    assert lines


def test_config_shows_sources_and_redacts_keys(tmp_path: Path) -> None:
    config = tmp_path / "fm.toml"
    config.write_text(
        '[providers.work]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "sk-cli-secret-value-12345"\n'
    )
    out = cli("--config", str(config), "config", env={"FMCLIENT_MODEL": "gpt-4o"})
    assert out.returncode == 0, out.stderr
    assert 'default_model = "gpt-4o"    # env FMCLIENT_MODEL' in out.stdout
    assert "[providers.work]" in out.stdout and 'api_key = "**********"' in out.stdout
    assert "sk-cli-secret" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["complete", "hi", "-m", "nope-model"], ["ConfigurationError", "unknown model or alias 'nope-model'"]),
        (["complete", "", "-m", "mock/x"], ["ValueError", "prompt must not be empty"]),
        (["complete", "hi", "-m", "mock/x", "-t", "9"], ["ValueError", "temperature must be between 0 and 2"]),
        (["--config", "/nonexistent/fm.toml", "models"], ["ConfigurationError", "does not exist"]),
    ],
)
def test_errors_are_one_clear_line(args: list[str], needles: list[str]) -> None:
    assert_one_clean_error_line(cli(*args), *needles)


def test_usage_errors_exit_2() -> None:
    out = cli("frobnicate")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_starting_the_cli_imports_no_unused_sdk() -> None:
    code = (
        "import sys\nfrom fmclient.cli import main\nmain(['complete', 'hi', '-m', 'mock/x'])\n"
        "heavy = [m for m in ('anthropic', 'openai', 'google.genai', 'boto3', 'ollama', 'llama_cpp') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
