"""Media on the command line: ``-a`` with images, audio, video and documents (and ``-a -`` from
stdin), ``fmclient transcribe`` and ``fmclient speak``. In-process with the mock provider where
the test is about what was sent and logged; over the OpenAI wire fake for the real SDK's body; as
the console script where stdin is a real pipe."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmclient.cli import main
from fmclient.logstore import LogStore, default_log_path
from fmclient.testing import MockProvider
from fmclient.types import AudioPart, DocumentPart, ImagePart, TextPart, VideoPart
from tests.fakes.media import docx, mp3_frames, mp4_head, pdf, wav
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer
from tests.test_cli import FMCLIENT, assert_one_clean_error_line
from tests.test_cli_logs import PNG

PDF = pdf(["Page one.", "Page two."])
WAV = wav(0.25)
MP4 = mp4_head()


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    with MockProvider() as provider:
        yield provider


def rows() -> list[dict[str, object]]:
    with LogStore() as store:
        return store.responses(limit=None)


def sent_parts(mock: MockProvider, call: int = 0) -> tuple[object, ...]:
    content = mock.calls[call].request.messages[0].content  # type: ignore[union-attr]
    assert isinstance(content, tuple)
    return content


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- -a FILE: every kind, told from the bytes ---------------------------------------------------


def test_attach_sends_each_kind_as_its_part_and_logs_it_by_hash(mock: MockProvider, tmp_path: Path) -> None:
    files = {
        "speech.wav": WAV,
        "report.pdf": PDF,
        "clip.mp4": MP4,
        "notes.docx": docx("hello"),
        "data.csv": b"a,b\n1,2\n",
        "dot.png": PNG,
    }
    args = ["complete", "Describe these.", "-m", "mock/x"]
    for name, data in files.items():
        args += ["-a", str(put(tmp_path, name, data))]
    assert main(args) == 0
    parts = sent_parts(mock)
    assert parts[0] == TextPart("Describe these.")
    assert [type(p) for p in parts[1:]] == [AudioPart, DocumentPart, VideoPart, DocumentPart, DocumentPart, ImagePart]
    assert [p.media_type for p in parts[1:]] == [  # type: ignore[attr-defined]
        "audio/wav",
        "application/pdf",
        "video/mp4",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/csv",
        "image/png",
    ]
    assert parts[2].name == "report.pdf"  # type: ignore[attr-defined]
    [row] = rows()
    assert [(a["sha256"], a["size"], a["path"]) for a in row["attachments"]] == [  # type: ignore[attr-defined]
        (hashlib.sha256(data).hexdigest(), len(data), str(tmp_path / name)) for name, data in files.items()
    ]
    log = default_log_path().read_bytes()
    assert WAV not in log and PDF not in log  # by hash, never the bytes


def test_the_kind_comes_from_the_bytes_not_the_extension(mock: MockProvider, tmp_path: Path) -> None:
    disguised = put(tmp_path, "holiday.png", WAV)  # a WAV named like an image
    assert main(["complete", "what is it?", "-a", str(disguised), "-m", "mock/x"]) == 0
    assert sent_parts(mock)[1] == AudioPart(data=WAV, media_type="audio/wav")
    # An MP4 container: the extension tells audio from video where the bytes leave it open.
    assert main(["complete", "and this?", "-a", str(put(tmp_path, "song.m4a", MP4)), "-m", "mock/x"]) == 0
    assert sent_parts(mock, 1)[1] == AudioPart(data=MP4, media_type="audio/mp4")


def test_an_unknown_or_empty_file_is_refused_with_the_reason_and_nothing_sent(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = put(tmp_path, "blob.pdf", bytes(range(256)) * 4)  # binary, no known signature
    assert main(["complete", "hi", "-a", str(unknown), "-m", "mock/x"]) == 1
    err = capsys.readouterr().err
    assert "could not be told from its bytes" in err and "--attach-type" in err and "blob.pdf" in err
    assert main(["complete", "hi", "-a", str(put(tmp_path, "empty.wav", b"")), "-m", "mock/x"]) == 1
    assert "is empty" in capsys.readouterr().err
    assert mock.calls == [] and not default_log_path().exists()


def test_media_the_model_cannot_take_is_refused_before_sending(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = put(tmp_path, "a.wav", WAV)
    assert main(["complete", "hi", "-a", str(audio), "-m", "mock/claude-sonnet-4-5"]) == 1
    assert "audio input" in capsys.readouterr().err
    assert mock.calls == []


def test_attachments_are_read_again_when_continuing(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio, report = put(tmp_path, "a.wav", WAV), put(tmp_path, "r.pdf", PDF)
    assert main(["complete", "listen and read", "-a", str(audio), "-a", str(report), "-m", "mock/x"]) == 0
    first = sent_parts(mock)
    assert main(["complete", "-c", "and then?"]) == 0
    assert sent_parts(mock, 1) == first  # the earlier turn, audio and document included
    report.write_bytes(pdf(["Changed."]))
    assert main(["complete", "-c", "again"]) == 1
    assert "has changed since it was sent" in capsys.readouterr().err
    assert len(mock.calls) == 2


# -- -a - : bytes on stdin ----------------------------------------------------------------------


def pipe_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_attach_from_stdin_takes_the_declared_type(
    mock: MockProvider, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe_stdin(monkeypatch, WAV)
    assert main(["complete", "what is said?", "-a", "-", "--attach-type", "audio/x-wav", "-m", "mock/x"]) == 0
    assert sent_parts(mock)[1] == AudioPart(data=WAV, media_type="audio/wav")
    [row] = rows()
    assert row["attachments"] == [  # no path: stdin
        {"sha256": hashlib.sha256(WAV).hexdigest(), "media_type": "audio/wav", "size": len(WAV), "path": None}
    ]
    # Bytes on stdin are not kept: continuing says so instead of sending the turn without them.
    assert main(["complete", "-c", "more"]) == 1
    assert "came from stdin and is not kept" in capsys.readouterr().err
    assert len(mock.calls) == 1


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["hi", "-a", "-"], WAV, "say their type with --attach-type MIME"),
        (["-a", "-", "--attach-type", "audio/wav"], WAV, "give the prompt as an argument"),
        (["hi", "-a", "-", "--attach-type", "application/pdf"], WAV, "declared 'application/pdf' but its bytes are"),
        (["hi", "-a", "-", "--attach-type", "font/woff"], WAV, "is not an image, audio, video or document type"),
        (["hi", "-a", "-", "--attach-type", "audio/wav"], b"", "stdin is empty"),
        (["hi", "--attach-type", "audio/wav"], WAV, "--attach-type is the type of the bytes read with -a -"),
    ],
)
def test_bad_stdin_attachments_are_refused_before_anything(
    mock: MockProvider,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: bytes,
    needle: str,
) -> None:
    pipe_stdin(monkeypatch, stdin)
    assert main(["complete", *args, "-m", "mock/x"]) == 1
    assert needle in capsys.readouterr().err
    assert mock.calls == [] and not default_log_path().exists()


def test_attach_from_a_real_pipe_and_a_closed_stdin() -> None:
    out = subprocess.run(
        [FMCLIENT, "complete", "what is this?", "-a", "-", "--attach-type", "application/pdf", "-m", "mock/x"],
        input=PDF,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"mock response\n"
    [row] = rows()
    assert row["attachments"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()  # type: ignore[index]
    closed = subprocess.run(
        ["bash", "-c", f"'{FMCLIENT}' complete hi -a - --attach-type audio/wav -m mock/x <&-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_clean_error_line(closed, "no attachment (-a -) given")
    assert len(rows()) == 1


def test_attached_audio_goes_over_the_openai_wire_as_input_audio(fake_server: FakeServer, tmp_path: Path) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(Answer("It says hello."))
    config = tmp_path / "wire.toml"
    config.write_text(
        f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-wirefake-000000000000"\n'
    )
    audio = put(tmp_path, "q.mp3", mp3_frames())
    code = main(
        ["--config", str(config), "complete", "what is said?", "-a", str(audio), "-m", "openai/gpt-4o-audio-preview"]
    )
    assert code == 0
    content = fake.bodies()[0]["messages"][0]["content"]
    assert content[1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(mp3_frames()).decode(), "format": "mp3"},
    }
    # A model that takes no audio: refused before any request.
    assert main(["--config", str(config), "complete", "and?", "-a", str(audio), "-m", "openai/gpt-4o"]) == 1
    assert len(fake_server.requests) == 1
    assert json.loads(json.dumps(rows()[0]["attachments"]))[0]["media_type"] == "audio/mpeg"


def test_log_hook_records_every_media_kind_by_hash(tmp_path: Path) -> None:
    # A sibling of -a: the Python client's log hook recorded images only, and dropped audio,
    # video and documents from the record.
    from fmclient import Client
    from fmclient.logstore import LogHook

    path = tmp_path / "app.db"
    with MockProvider():
        client = Client(hooks=[LogHook(path)])
        content = ["hear and read", AudioPart(data=WAV, media_type="audio/wav"), DocumentPart.from_source(PDF)]
        client.complete([{"role": "user", "content": content}], model="mock/x")
    with LogStore(path) as store:
        [row] = store.responses()
    assert [(a["media_type"], a["sha256"]) for a in row["attachments"]] == [
        ("audio/wav", hashlib.sha256(WAV).hexdigest()),
        ("application/pdf", hashlib.sha256(PDF).hexdigest()),
    ]


# -- fmclient transcribe / speak -------------------------------------------------------------------


def openai_config(fake_server: FakeServer, tmp_path: Path) -> str:
    config = tmp_path / "wire.toml"
    config.write_text(
        f'[providers.openai]\nbase_url = "{fake_server.url}/v1"\napi_key = "sk-test-wirefake-000000000000"\n'
        '[prices]\nopenai = "openai"\n'
    )
    return str(config)


def test_transcribe_over_the_openai_wire_prints_the_text_and_logs_the_call(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fakes.audio import tone_wav

    fake = FakeOpenAI(fake_server)
    audio = tone_wav(2.0)
    meeting = put(tmp_path, "meeting.wav", audio)
    config = openai_config(fake_server, tmp_path)
    args = ["--config", config, "transcribe", str(meeting), "-m", "openai/gpt-4o-transcribe"]
    assert main([*args, "--language", "en", "--prompt", "Acme Corp"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    (upload,) = fake.audio.uploads
    assert upload.fields["language"] == "en" and upload.fields["prompt"] == "Acme Corp" and upload.data == audio
    [row] = rows()
    assert (row["operation"], row["model"], row["provider"]) == ("transcribe", "gpt-4o-transcribe", "openai")
    assert (row["prompt"], row["answer"]) == ("Acme Corp", "hello world")
    assert row["usage"]["input_audio_tokens"] == 20  # type: ignore[index]
    assert row["cost"] is not None and float(row["cost"]) > 0  # type: ignore[arg-type]
    assert row["attachments"] == [
        {
            "sha256": hashlib.sha256(audio).hexdigest(),
            "media_type": "audio/wav",
            "size": len(audio),
            "path": str(meeting),
        }
    ]
    assert audio not in default_log_path().read_bytes()
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == "hello world" and data["model"] == "gpt-4o-transcribe" and data["cost"]["total"]
    # searchable like any answer
    assert main(["logs", "-q", "hello", "--json", "-n", "0"]) == 0
    assert [r["operation"] for r in json.loads(capsys.readouterr().out)] == ["transcribe", "transcribe"]


def test_speak_over_the_openai_wire_writes_the_file_and_logs_it_by_hash(
    fake_server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeOpenAI(fake_server)
    config = openai_config(fake_server, tmp_path)
    out = tmp_path / "hello.wav"
    speak = ["speak", "Hello there.", "-m", "openai/gpt-4o-mini-tts", "--voice", "coral", "--instructions", "calm"]
    code = main(["--config", config, *speak, "-o", str(out)])
    assert code == 0
    assert capsys.readouterr().out == f"{out}\n"
    # the format from the file's extension: a .wav file holds WAV
    assert fake.audio.speech_bodies[0]["response_format"] == "wav"
    assert fake.audio.speech_bodies[0]["instructions"] == "calm"
    data = out.read_bytes()
    assert data.startswith(b"RIFF")
    [row] = rows()
    assert (row["operation"], row["prompt"], row["model"]) == ("speak", "Hello there.", "gpt-4o-mini-tts")
    assert row["attachments"] == [
        {"sha256": hashlib.sha256(data).hexdigest(), "media_type": "audio/wav", "size": len(data), "path": str(out)}
    ]
    assert row["cost"] is None and "reports no token usage" in row["cost_reason"]  # type: ignore[operator]
    assert data not in default_log_path().read_bytes()


def test_speak_reads_the_text_from_stdin_and_prints_json(
    mock: MockProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Read me aloud.\n"))
    out = tmp_path / "x.mp3"
    assert main(["speak", "-", "-m", "mock/tts", "--voice", "v", "--format", "mp3", "-o", str(out), "--json"]) == 0
    assert mock.calls[0].request.text == "Read me aloud.\n"  # type: ignore[union-attr]
    assert mock.calls[0].request.format == "mp3"  # type: ignore[union-attr]
    data = json.loads(capsys.readouterr().out)
    assert data["bytes"] == out.stat().st_size and data["characters"] == len("Read me aloud.\n")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["transcribe", "missing.wav", "-m", "mock/t"], ["ValueError", "audio file not found: missing.wav"]),
        (["transcribe", "a.wav", "-m", "nope-model"], ["ConfigurationError", "unknown model or alias 'nope-model'"]),
        (["speak", "hi", "-m", "nope-model", "--voice", "v", "-o", "x.mp3"], ["ConfigurationError", "nope-model"]),
        (["speak", "hi", "-m", "mock/t", "-o", "x.mp3"], ["ValueError", "speak needs a voice"]),
        (["speak", "  ", "-m", "mock/t", "--voice", "v", "-o", "x.mp3"], ["ValueError", "must not be empty"]),
        (["transcribe", "notes.txt", "-m", "mock/t"], ["could not be told"]),
    ],
)
def test_transcribe_and_speak_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    put(tmp_path, "a.wav", WAV)
    put(tmp_path, "notes.txt", b"not audio at all")
    out = subprocess.run([FMCLIENT, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert_one_clean_error_line(out, *needles)
    assert not (tmp_path / "x.mp3").exists()
    assert not default_log_path().exists() or all(r["error"] for r in rows())


def test_transcribe_from_a_closed_stdin_is_a_clear_error() -> None:
    out = subprocess.run(
        ["bash", "-c", f"'{FMCLIENT}' transcribe - -m mock/t <&-"], capture_output=True, text=True, timeout=60
    )
    assert_one_clean_error_line(out, "no audio (-) given")
    assert not default_log_path().exists()


def test_a_locked_log_keeps_the_transcription(
    mock: MockProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from fmclient import logstore

    LogStore().close()
    monkeypatch.setattr(logstore, "BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(default_log_path(), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["transcribe", str(put(tmp_path, "a.wav", WAV)), "-m", "mock/t"]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    captured = capsys.readouterr()
    assert captured.out.startswith("transcript of")  # the answer is still printed
    assert "locked by another process" in captured.err
    assert main(["complete", "after", "-m", "mock/x"]) == 0
    assert [r["operation"] for r in rows()] == ["transcribe", "chat"]


def test_logs_names_the_operation_of_a_row(
    mock: MockProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(put(tmp_path, "a.wav", WAV)), "-m", "mock/t"]) == 0
    capsys.readouterr()
    assert main(["logs", "-n", "1"]) == 0
    assert "  transcribe  mock/t  " in capsys.readouterr().out.splitlines()[0]


def test_speak_to_stdout_writes_the_audio_bytes_for_a_pipe() -> None:
    out = subprocess.run(
        [FMCLIENT, "speak", "hello", "-m", "mock/tts", "--voice", "v", "-o", "-"], capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"RIFF") and out.stdout[8:12] == b"WAVE"  # the mock's WAV, nothing else
    [row] = rows()
    assert row["attachments"][0]["path"] is None  # type: ignore[index]
    assert row["attachments"][0]["sha256"] == hashlib.sha256(out.stdout).hexdigest()  # type: ignore[index]
