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
    import mcp_server_time  # noqa: F401  (a dev dependency: missing fails here, never skips)
    out = run(str(EXAMPLES / "mcp_time.py"), "--offline")
    assert out.returncode == 0, out.stderr
    assert "tools: time_get_current_time, time_convert_time" in out.stdout
    assert '"timezone": "Asia/Tokyo"' in out.stdout  # the server's own answer
    assert out.stdout.strip().endswith("-- stopped=answer, steps=2")


def test_summarise_pdf_sends_the_document_and_prints_the_citations(tmp_path: Path) -> None:
    from tests.fakes import anthropic as fa
    from tests.fakes.media import pdf
    from tests.fakes.server import FakeServer

    document = tmp_path / "report.pdf"
    document.write_bytes(pdf(["Revenue rose.", "Costs fell."]))
    cited = {
        "type": "page_location",
        "cited_text": "Revenue rose.",
        "document_index": 0,
        "document_title": "report.pdf",
        "start_page_number": 1,
        "end_page_number": 2,
    }
    with FakeServer() as server:
        server.default = fa.message_reply([{"type": "text", "text": "Revenue rose.", "citations": [cited]}])
        config = tmp_path / "fmclient.toml"
        config.write_text(f'[providers.anthropic]\nbase_url = "{server.url}"\napi_key = "test-key"\n')
        out = run(
            str(EXAMPLES / "summarise_pdf.py"),
            str(document),
            "anthropic/claude-sonnet-4-5",
            env={"FMCLIENT_CONFIG": str(config)},
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["Revenue rose.", "  [report.pdf, page 1-2] 'Revenue rose.'"]
        block = server.requests[0].json()["messages"][0]["content"][0]
        assert (block["type"], block["title"], block["citations"]) == ("document", "report.pdf", {"enabled": True})


def _openai_fake_env(server: object) -> dict[str, str]:
    # The openai SDK reads its key and endpoint from the environment, as a user's shell sets them.
    return {"OPENAI_API_KEY": "sk-test-not-real-0000", "OPENAI_BASE_URL": f"{server.url}/v1"}  # type: ignore[attr-defined]


# The examples run in processes of their own, where the suite's fixed day for retirements does not
# apply: they are run with current models (a retiring one would warn, a retired one be refused).
# OpenAI's whisper-1 (the one model with timed segments) retires 2027-02-26, so its segments are
# shown by running the example in this process, on the suite's day.
def test_transcribe_example_prints_the_transcript(tmp_path: Path) -> None:
    from tests.fakes.audio import tone_wav
    from tests.fakes.openai import FakeOpenAI
    from tests.fakes.server import FakeServer

    clip = tmp_path / "clip.wav"
    clip.write_bytes(tone_wav(2.0))
    with FakeServer() as server:
        fake = FakeOpenAI(server)
        out = run(str(EXAMPLES / "transcribe.py"), str(clip), env=_openai_fake_env(server))
        assert out.returncode == 0, out.stderr
        assert "deprecated" not in out.stderr
        assert fake.audio.uploads[0].data == clip.read_bytes()
        assert fake.audio.uploads[0].fields["model"] == "gpt-transcribe"
        unreadable = tmp_path / "notes.txt"
        unreadable.write_text("not audio")
        refused = run(str(EXAMPLES / "transcribe.py"), str(unreadable), env=_openai_fake_env(server))
    lines = out.stdout.splitlines()
    assert lines[0] == "hello world"
    assert lines[-1].startswith("-- openai/gpt-transcribe, language=en, duration=2.0s, cost: ")
    assert refused.returncode == 1 and "its type could not be told from its bytes" in refused.stderr


def test_transcribe_example_prints_whisper_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy

    from tests.fakes.audio import tone_wav
    from tests.fakes.openai import FakeOpenAI
    from tests.fakes.server import FakeServer

    clip = tmp_path / "clip.wav"
    clip.write_bytes(tone_wav(2.0))
    with FakeServer() as server:
        FakeOpenAI(server)
        for name, value in _openai_fake_env(server).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["transcribe.py", str(clip), "openai/whisper-1"])
        runpy.run_path(str(EXAMPLES / "transcribe.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "hello world"
    assert lines[1].split() == ["[", "0.00s", "-", "1.00s]", "hello"]
    assert lines[-1].startswith("-- openai/whisper-1, language=english, duration=2.0s, cost: ")


def test_speak_example_writes_a_playable_file(tmp_path: Path) -> None:
    # Gemini TTS, the example's default: OpenAI's Speech API models all retire on 2027-01-06.
    from tests.fakes.audio import decode_wav, gemini_handler
    from tests.fakes.server import FakeServer

    path = tmp_path / "hello.wav"
    with FakeServer(handler=gemini_handler()) as server:
        env = {"GEMINI_API_KEY": "gem-test-not-real-0000", "GOOGLE_GEMINI_BASE_URL": server.url}
        out = run(str(EXAMPLES / "speak.py"), "Hello.", str(path), env=env)
        assert out.returncode == 0, out.stderr
        assert "deprecated" not in out.stderr
        assert "/models/gemini-3.8-flash-tts:generateContent" in server.requests[0].path
    assert decode_wav(path.read_bytes()).rate == 24000
    assert out.stdout.startswith(f"wrote {path} (audio/wav, ")
    assert out.stdout.splitlines()[0].endswith("with gemini/gemini-3.8-flash-tts")
