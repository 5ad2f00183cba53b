"""Audio, video and document input: the parts, where their bytes come from, MIME sniffing, the
profiles that say which model takes which media, and each provider's mapping, driven through the
real SDKs over the loopback wire fakes with media made here (a WAV from the stdlib, speech from
``espeak-ng``, a two-page PDF written by hand, a DOCX)."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import pytest
from pydantic import TypeAdapter

from fmclient import AudioPart, Citation, Client, DocumentPart, ImagePart, VideoPart
from fmclient.errors import UnsupportedFeatureError
from fmclient.profiles import Profile, profile_for
from fmclient.testing import MockProvider
from fmclient.types import Message, Request, part_from_input
from tests.fakes import anthropic as fa
from tests.fakes import bedrock as fb
from tests.fakes import gemini as fg
from tests.fakes import openai as foa
from tests.fakes.media import docx, ebml_head, espeak_wav, mp3_frames, mp4_head, pdf, wav
from tests.fakes.profiles import PROFILES
from tests.fakes.server import FakeServer, Reply

PDF = pdf(["The first page says hello.", "The second page says goodbye."])
WAV = wav(0.25)


def client_for(name: str, server: FakeServer) -> Client:
    return Client(providers={name: PROFILES[name].table(server.url)}, max_retries=0)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDMEDIA")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "media-secret")


# -- parts and sniffing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "data", "name", "expected"),
    [
        ("audio", WAV, None, "audio/wav"),
        ("audio", mp3_frames(), None, "audio/mpeg"),
        ("audio", b"ID3\x04\x00" + mp3_frames(), None, "audio/mpeg"),
        ("audio", b"fLaC\x00\x00\x00\x22" + bytes(40), None, "audio/flac"),
        ("audio", b"OggS\x00\x02" + bytes(40), None, "audio/ogg"),
        ("audio", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(20), None, "audio/webm"),
        ("audio", mp4_head(b"M4A "), None, "audio/mp4"),
        ("video", mp4_head(), None, "video/mp4"),
        ("video", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(20), None, "video/webm"),
        # The container's own word: an EBML header's DocType (absent: EBML's default, Matroska), an
        # MP4's ftyp brand (one that does not tell audio from video leaves it to the part's kind).
        ("audio", ebml_head(b"webm"), None, "audio/webm"),
        ("audio", ebml_head(b"matroska"), None, "audio/x-matroska"),
        ("audio", ebml_head(None), None, "audio/x-matroska"),
        ("video", ebml_head(b"matroska"), None, "video/x-matroska"),
        ("audio", mp4_head(b"mp42"), None, "audio/mp4"),
        ("audio", mp4_head(b"isom"), None, "audio/mp4"),
        ("audio", b"\xff\xf1\x50\x80" + bytes(60), None, "audio/aac"),  # ADTS
        ("document", PDF, None, "application/pdf"),
        ("document", b"just some words\n", None, "text/plain"),
        ("document", b"city,population\nParis,2100000\n", "cities.csv", "text/csv"),
        ("document", b"# Title\n", "notes.md", "text/markdown"),
        (
            "document",
            docx(),
            None,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ],
)
def test_the_type_is_sniffed_from_the_bytes_and_the_name(
    tmp_path: pathlib.Path, kind: str, data: bytes, name: str | None, expected: str
) -> None:
    file = tmp_path / (name or f"media-without-extension-{kind}")
    file.write_bytes(data)
    part = part_from_input({"type": kind, kind: file}, "content[0]")
    assert part.type == kind
    assert part.media_type == expected
    assert part.data == data  # type: ignore[union-attr]


def test_real_speech_from_espeak_is_a_wav() -> None:
    speech = espeak_wav("The meeting starts at nine.")
    assert speech is not None, "espeak-ng is not installed: apt-get install espeak-ng (.ci/run installs it)"
    part = AudioPart.from_source(speech)
    assert part.media_type == "audio/wav"
    assert len(part.data or b"") > 1000


def test_a_document_from_a_path_keeps_its_file_name(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "report.pdf"
    file.write_bytes(PDF)
    part = part_from_input({"type": "document", "path": str(file), "citations": True}, "c")
    assert isinstance(part, DocumentPart)
    assert (part.name, part.citations, part.media_type) == ("report.pdf", True, "application/pdf")


def test_a_data_uri_and_a_url_are_sources_too() -> None:
    uri = "data:audio/wav;base64," + base64.b64encode(WAV).decode()
    assert AudioPart.from_source(uri).data == WAV
    document = part_from_input({"type": "document", "document": "https://example.com/a/report.pdf"}, "c")
    assert isinstance(document, DocumentPart)
    assert (document.url, document.media_type, document.data) == (
        "https://example.com/a/report.pdf",
        "application/pdf",
        None,
    )
    video = VideoPart.from_source("gs://bucket/clip.mp4")
    assert (video.url, video.media_type) == ("gs://bucket/clip.mp4", "video/mp4")


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"type": "audio", "audio": b""}, "audio bytes is empty"),
        ({"type": "document", "document": b""}, "document bytes is empty"),
        ({"type": "audio", "audio": PDF}, "is application/pdf, not an audio"),
        (
            {"type": "audio", "audio": WAV, "mime_type": "audio/mpeg"},
            "declared 'audio/mpeg' but its bytes are audio/wav",
        ),
        ({"type": "audio", "audio": WAV, "mime_type": "application/pdf"}, "not an audio type"),
        ({"type": "document", "document": b"\x00\x01\x02\x03binary"}, "could not be told from its bytes"),
        ({"type": "video", "video": b"not a video at all"}, "could not be told from its bytes"),
        ({"type": "audio", "audio": "https://example.com/a.wav"}, "an audio URL must be"),
        ({"type": "audio", "audio": WAV, "colour": "red"}, "takes no colour"),
        ({"type": "document", "document": PDF, "context": "q3"}, "a document part takes no context"),
    ],
)
def test_bad_media_is_refused_with_the_reason(part: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        part_from_input(part, "content[0]")


def test_a_string_is_never_read_as_a_path(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "secret.wav"
    file.write_bytes(WAV)
    # The same refusal whether or not the file exists: a forwarded message cannot probe the disk.
    for value in (str(file), str(tmp_path / "missing.wav"), f"file://{file}"):
        with pytest.raises(ValueError, match="an audio URL must be") as caught:
            part_from_input({"type": "audio", "audio": value}, "c")
        assert "not found" not in str(caught.value)
    assert part_from_input({"type": "audio", "path": str(file)}, "c").data == WAV  # type: ignore[union-attr]


def test_image_part_shares_the_one_home_for_sources() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(20)
    assert ImagePart.from_source(png).media_type == "image/png"
    with pytest.raises(ValueError, match="not a PNG, JPEG, GIF or WebP image"):
        ImagePart.from_source(PDF)
    with pytest.raises(ValueError, match="an image URL must be"):
        ImagePart.from_source("/etc/passwd")


# -- profiles --------------------------------------------------------------------------------------
def test_profiles_say_which_families_take_which_media() -> None:
    claude, gpt4o, audio, gemini, nova, llama = (
        profile_for(m)
        for m in (
            "claude-sonnet-4-5",
            "gpt-4o",
            "gpt-4o-audio-preview",
            "gemini-2.5-flash",
            "amazon.nova-pro-v1:0",
            "llama3.2",
        )
    )
    assert (claude.audio, claude.video, claude.documents) == (False, False, True)
    assert (gpt4o.audio, gpt4o.documents) == (False, True)
    # The Responses API's input_file takes text, Office and spreadsheet files besides PDF.
    assert gpt4o.document_formats is not None and {
        "application/pdf",
        "text/csv",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    } <= set(gpt4o.document_formats)
    assert (audio.audio, audio.audio_formats) == (True, ("audio/wav", "audio/mpeg"))
    assert (gemini.audio, gemini.video, gemini.documents) == (True, True, True)
    assert (nova.audio, nova.video, nova.documents) == (False, True, True)
    assert (llama.audio, llama.video, llama.documents) == (False, False, False)
    # A model nobody knows, or one only a maker's catch-all family matches: the server decides.
    for model in ("some-model-nobody-knows", "gpt-9-future"):
        unknown = profile_for(model)
        assert (unknown.audio, unknown.video, unknown.documents) == (True, True, True)


def _request(*parts: Any, model: str = "m") -> Request:
    return Request(model=model, messages=(Message.user(["look", *parts]),))


def test_profile_limits_refuse_before_sending() -> None:
    profile = Profile(max_audio_bytes=100, max_document_pages=1, audio_formats=("audio/mpeg",))
    with pytest.raises(UnsupportedFeatureError, match=r"audio of type audio/wav \(it takes audio/mpeg\)"):
        profile.check(_request(AudioPart.from_source(WAV)), provider="p")
    with pytest.raises(UnsupportedFeatureError, match="2 document pages in one request"):
        profile.check(_request(DocumentPart.from_source(PDF)), provider="p")
    with pytest.raises(UnsupportedFeatureError, match="bytes inline"):
        Profile(max_audio_bytes=100).check(_request(AudioPart.from_source(WAV)), provider="p")
    with pytest.raises(UnsupportedFeatureError, match="seconds of audio"):
        Profile(max_audio_seconds=1).check(_request(AudioPart.from_source(wav(2.0))), provider="p")


def test_a_host_may_narrow_formats_never_widen() -> None:
    profile = Profile(document_formats=("application/pdf", "text/plain"))
    narrowed = profile.restrict(document_formats=["application/pdf"], reason="the host reads PDFs only")
    with pytest.raises(UnsupportedFeatureError, match="the host reads PDFs only"):
        narrowed.check(_request(DocumentPart.from_source(b"plain words")), provider="p")
    with pytest.raises(ValueError, match="subset"):
        profile.restrict(document_formats=["application/pdf", "text/csv"], reason="wider")


def test_the_mock_enforces_media_profiles() -> None:
    with MockProvider() as mock:
        with pytest.raises(UnsupportedFeatureError, match="audio input"):
            Client().complete(
                [{"role": "user", "content": [{"type": "audio", "audio": WAV}]}], model="mock/claude-sonnet-4-5"
            )
        assert mock.calls == []


# -- refused before any request ---------------------------------------------------------------------
def test_audio_to_a_text_only_model_sends_nothing(fake_server: FakeServer) -> None:
    with pytest.raises(UnsupportedFeatureError, match="does not support audio input"):
        client_for("openai", fake_server).complete(
            [{"role": "user", "content": ["what is said?", {"type": "audio", "audio": WAV}]}], model="openai/gpt-4o"
        )
    assert fake_server.requests == []


def test_a_document_to_ollama_sends_nothing(fake_server: FakeServer) -> None:
    with pytest.raises(UnsupportedFeatureError, match="does not support document input"):
        client_for("ollama", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": PDF}]}], model="ollama/llama3.2"
        )
    # A model the table does not know reaches the adapter, which has no way to send it.
    with pytest.raises(UnsupportedFeatureError, match="takes text and images only, not document input"):
        client_for("ollama", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": PDF}]}],
            model="ollama/some-local-model",
        )
    assert fake_server.requests == []


def test_a_pdf_over_the_page_limit_sends_nothing(fake_server: FakeServer) -> None:
    big = pdf([f"page {n}" for n in range(101)])
    with pytest.raises(UnsupportedFeatureError, match=r"101 document pages in one request \(at most 100\)"):
        client_for("anthropic", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": big}]}],
            model="anthropic/claude-sonnet-4-5",
        )
    assert fake_server.requests == []


def test_a_pdf_is_paged_by_its_page_tree_once_per_part(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmclient import _media
    from fmclient.types import DocumentPart

    # The page tree's /Count wherever it stands in its dictionary; an outline's /Count is no page count.
    reordered = PDF.replace(
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>", b"<< /Count 2 /Kids [3 0 R 5 0 R] /Type /Pages >>"
    )
    assert reordered != PDF and _media.pdf_page_count(reordered) == 2
    assert _media.pdf_page_count(PDF.replace(b"%PDF-1.4\n", b"%PDF-1.4\n<< /Type /Outlines /Count 7 >>\n")) == 2
    # A large PDF: the root (no /Parent) near either end is found without reading the middle; an
    # intermediate node there is not taken for it.
    padding = b"%" + bytes(200_000) + b"\n"
    node = b"<< /Type /Pages /Parent 2 0 R /Kids [3 0 R] /Count 1 >>\n"
    assert _media.pdf_page_count(PDF.replace(b"%PDF-1.4\n", b"%PDF-1.4\n" + node + padding)) == 2
    assert _media.pdf_page_count(PDF.replace(b"xref", padding + b"xref")) == 2  # the root in the head window
    assert _media.pdf_page_count(PDF[:9] + padding + PDF[9:] + padding) == 2  # the root in the middle: a full pass
    counted = []
    monkeypatch.setattr(_media, "pdf_page_count", lambda data: counted.append(data) or 2)
    part = DocumentPart.from_source(PDF)
    fake_server.default = fa.message_reply("It says hello.")
    client = client_for("anthropic", fake_server)
    for _ in range(2):  # every check of every call (engine, adapter, fallbacks) reads the one count
        client.complete([{"role": "user", "content": ["sum up", part]}], model="anthropic/claude-sonnet-4-5")
    assert part.page_count() == 2 and len(counted) == 1


def test_an_empty_file_is_refused_before_anything(fake_server: FakeServer, tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        client_for("gemini", fake_server).complete(
            [{"role": "user", "content": ["hi", {"type": "audio", "audio": empty}]}], model="gemini/gemini-2.5-flash"
        )
    assert fake_server.requests == []


# -- OpenAI -----------------------------------------------------------------------------------------
def test_openai_chat_sends_input_audio_and_file_parts(fake_server: FakeServer) -> None:
    from openai.types.chat import ChatCompletionContentPartParam

    foa.FakeOpenAI(fake_server)
    speech = espeak_wav("Please summarise the attached report.") or WAV
    client = client_for("openai", fake_server)
    client.complete(
        [{"role": "user", "content": ["answer the question", {"type": "audio", "audio": speech}]}],
        model="openai/gpt-4o-audio-preview",
    )
    client.complete(
        [{"role": "user", "content": ["sum up", {"type": "document", "document": PDF, "name": "report.pdf"}]}],
        model="openai/gpt-4o",
    )
    audio_parts = fake_server.requests[0].json()["messages"][0]["content"]
    file_parts = fake_server.requests[1].json()["messages"][0]["content"]
    assert audio_parts[1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(speech).decode(), "format": "wav"},
    }
    assert file_parts[1] == {
        "type": "file",
        "file": {
            "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
            "filename": "report.pdf",
        },
    }
    checker = TypeAdapter(list[ChatCompletionContentPartParam])
    checker.validate_python(audio_parts, strict=True)
    checker.validate_python(file_parts, strict=True)


def test_openai_file_inputs_limit_the_bytes_of_a_requests_documents_together() -> None:
    # "up to 100 pages and 32MB of total content in a single request, across multiple file
    # inputs": two documents each under 32 MB but over it together are refused before sending.
    profile = Profile(max_document_bytes=1000, max_document_total_bytes=1000)
    text = DocumentPart.from_source(b"x" * 600, "text/plain")
    profile.check(_request(text), provider="p")
    with pytest.raises(UnsupportedFeatureError, match=r"1,200 bytes of inline documents in one request"):
        profile.check(_request(text, text), provider="p")
    for model in ("gpt-4o", "gpt-4.1", "gpt-5", "gpt-5-chat-latest", "o3", "gpt-6-sol"):
        assert profile_for(model).max_document_total_bytes == 32 * 1024 * 1024, model


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize("model", ["openai/gpt-5", "openai/gpt-4o"])
def test_openai_responses_sends_office_and_text_documents_as_input_file(fake_server: FakeServer, model: str) -> None:
    from openai.types.responses import ResponseInputFileParam

    foa.FakeOpenAI(fake_server)
    word = docx("Quarterly numbers")
    client_for("openai", fake_server).complete(
        [
            {
                "role": "user",
                "content": [
                    "compare",
                    {"type": "document", "document": word},
                    {"type": "document", "document": b"region,sales\nnorth,10\n", "mime_type": "text/csv"},
                    {"type": "document", "document": b'{"a": 1}', "mime_type": "application/json"},
                ],
            }
        ],
        model=model,
        api="responses",  # gpt-5 goes there anyway; gpt-4o is sent there by the call option
    )
    assert fake_server.requests[0].path.endswith("/responses")
    parts = fake_server.requests[0].json()["input"][0]["content"]
    # The file name's extension tells the API the type: each gets its own.
    assert parts[1:] == [
        {
            "type": "input_file",
            "file_data": f"data:{DOCX_TYPE};base64," + base64.b64encode(word).decode(),
            "filename": "document.docx",
        },
        {
            "type": "input_file",
            "file_data": "data:text/csv;base64," + base64.b64encode(b"region,sales\nnorth,10\n").decode(),
            "filename": "document.csv",
        },
        {
            "type": "input_file",
            "file_data": "data:application/json;base64," + base64.b64encode(b'{"a": 1}').decode(),
            "filename": "document.json",
        },
    ]
    for part in parts[1:]:
        TypeAdapter(ResponseInputFileParam).validate_python(part, strict=True)


def test_openai_chat_refuses_a_non_pdf_file_part_naming_the_responses_api(fake_server: FakeServer) -> None:
    # Chat Completions' file part takes PDF only: a DOCX the family takes (on Responses) is
    # refused before sending, with the way round, instead of the API's 400.
    with pytest.raises(UnsupportedFeatureError, match=r"PDF only, not .*wordprocessingml.*api='responses'"):
        client_for("openai", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": docx("Hi")}]}],
            model="openai/gpt-4o",
        )
    assert fake_server.requests == []


def test_openai_input_audio_takes_wav_and_mp3_only(fake_server: FakeServer) -> None:
    flac = b"fLaC\x00\x00\x00\x22" + bytes(40)
    with pytest.raises(UnsupportedFeatureError, match="audio/flac"):
        client_for("openai", fake_server).complete(
            [{"role": "user", "content": [{"type": "audio", "audio": flac}]}], model="openai/gpt-4o-audio-preview"
        )
    assert fake_server.requests == []


def test_openai_responses_sends_input_file(fake_server: FakeServer) -> None:
    from openai.types.responses import ResponseInputFileParam

    foa.FakeOpenAI(fake_server)
    client_for("openai", fake_server).complete(
        [
            {
                "role": "user",
                "content": [
                    "compare",
                    {"type": "document", "document": PDF, "name": "a.pdf"},
                    {"type": "document", "document": "https://example.com/b.pdf"},
                ],
            }
        ],
        model="openai/gpt-5",
    )
    body = fake_server.requests[0].json()
    assert fake_server.requests[0].path.endswith("/responses")
    parts = body["input"][0]["content"]
    assert parts[1] == {
        "type": "input_file",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        "filename": "a.pdf",
    }
    assert parts[2] == {"type": "input_file", "file_url": "https://example.com/b.pdf"}
    for part in parts[1:]:
        TypeAdapter(ResponseInputFileParam).validate_python(part, strict=True)


# -- Anthropic --------------------------------------------------------------------------------------
def test_anthropic_sends_document_blocks_with_citations(fake_server: FakeServer) -> None:
    from anthropic.types import DocumentBlockParam

    fake_server.default = fa.message_reply("It says hello.")
    client_for("anthropic", fake_server).complete(
        [
            {
                "role": "user",
                "content": [
                    {"type": "document", "document": PDF, "name": "greeting.pdf", "citations": True},
                    {"type": "document", "document": b"a,b\n1,2\n", "mime_type": "text/csv"},
                    "what does it say?",
                ],
            }
        ],
        model="anthropic/claude-sonnet-4-5",
    )
    blocks = fake_server.requests[0].json()["messages"][0]["content"]
    assert blocks[0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
        "title": "greeting.pdf",
        "citations": {"enabled": True},
    }
    assert blocks[1] == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "a,b\n1,2\n"},
    }
    for block in blocks[:2]:
        TypeAdapter(DocumentBlockParam).validate_python(block, strict=True)


def test_anthropic_refuses_office_files_it_cannot_carry(fake_server: FakeServer) -> None:
    with pytest.raises(UnsupportedFeatureError, match="take PDF and text"):
        client_for("anthropic", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": docx()}]}],
            model="anthropic/claude-sonnet-4-5",
        )
    assert fake_server.requests == []


# -- Gemini -----------------------------------------------------------------------------------------
def test_gemini_sends_audio_video_and_pdf_inline(fake_server: FakeServer) -> None:
    from google.genai import types

    fake_server.default = fg.generate_reply("Heard and seen.")
    video = mp4_head()
    client_for("gemini", fake_server).complete(
        [
            {
                "role": "user",
                "content": [
                    "describe",
                    {"type": "audio", "audio": WAV},
                    {"type": "video", "video": video},
                    {"type": "document", "document": PDF},
                ],
            }
        ],
        model="gemini/gemini-2.5-flash",
    )
    parts = fake_server.requests[0].json()["contents"][0]["parts"]
    # The JSON form of a proto field takes either spelling (mimeType or mime_type).
    blobs = [p["inlineData"] for p in parts[1:]]
    # ...and the SDK writes bytes as URL-safe base64, as the proto JSON mapping allows.
    inline = [(b.get("mimeType", b.get("mime_type")), base64.urlsafe_b64decode(b["data"] + "==")) for b in blobs]
    assert inline == [("audio/wav", WAV), ("video/mp4", video), ("application/pdf", PDF)]
    for part in parts:
        types.Part.model_validate(part)


# Media above the inline limit: tests/test_media_gemini_files.py (Files API; Vertex AI refuses).


# -- Bedrock ----------------------------------------------------------------------------------------
def test_bedrock_sends_document_and_video_blocks(fake_server: FakeServer, aws: None) -> None:
    fake_server.default = fb.converse_reply(text="A clip and a report.")
    client_for("bedrock", fake_server).complete(
        [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": mp4_head()},
                    {"type": "video", "video": "s3://bucket/clip.mov"},
                    {"type": "document", "document": PDF, "name": "q3 report.v2.pdf", "citations": True},
                    {"type": "document", "document": docx()},
                    "describe both",
                ],
            }
        ],
        model="bedrock/us.amazon.nova-pro-v1:0",
    )
    content = fake_server.requests[0].json()["messages"][0]["content"]
    assert content[0] == {"video": {"format": "mp4", "source": {"bytes": base64.b64encode(mp4_head()).decode()}}}
    assert content[1] == {"video": {"format": "mov", "source": {"s3Location": {"uri": "s3://bucket/clip.mov"}}}}
    assert content[2] == {
        "document": {
            "format": "pdf",
            "name": "q3 report-v2",
            "source": {"bytes": base64.b64encode(PDF).decode()},
            "citations": {"enabled": True},
        }
    }
    assert content[3]["document"]["format"] == "docx"
    assert content[3]["document"]["name"] == "document-2"


def test_bedrock_refuses_a_document_over_its_inline_limit(fake_server: FakeServer, aws: None) -> None:
    big = pdf(["x"]) + bytes(5 * 1024 * 1024)
    with pytest.raises(UnsupportedFeatureError, match=r"4\.5 MB"):
        client_for("bedrock", fake_server).complete(
            [{"role": "user", "content": ["sum up", {"type": "document", "document": big}]}],
            model="bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        )
    assert fake_server.requests == []


# -- siblings: media never dropped in silence ----------------------------------------------------------
def test_media_in_an_assistant_turn_is_refused_not_dropped(fake_server: FakeServer) -> None:
    prompt = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ["here", {"type": "document", "document": PDF}]},
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(UnsupportedFeatureError, match="documents in assistant messages"):
        client_for("openai", fake_server).complete(prompt, model="openai/gpt-4o")
    assert fake_server.requests == []


def test_media_in_a_system_message_is_refused() -> None:
    with MockProvider(enforce_profiles=False), pytest.raises(UnsupportedFeatureError, match="cannot carry audio"):
        Client().complete(
            [{"role": "system", "content": [{"type": "audio", "audio": WAV}]}, {"role": "user", "content": "hi"}],
            model="mock/x",
        )


def test_media_parts_make_different_cache_keys() -> None:
    from fmclient.cache import request_key

    one = Request(model="m", messages=(Message.user(["say", AudioPart.from_source(wav(0.25, tone=440))]),))
    two = Request(model="m", messages=(Message.user(["say", AudioPart.from_source(wav(0.25, tone=880))]),))
    assert request_key("p", one) != request_key("p", two)


# -- citations ------------------------------------------------------------------------------------------
_PAGE_CITATION = {
    "type": "page_location",
    "cited_text": "The first page says hello.",
    "document_index": 0,
    "document_title": "greeting.pdf",
    "start_page_number": 1,
    "end_page_number": 2,
}
_CHAR_CITATION = {
    "type": "char_location",
    "cited_text": "a,b",
    "document_index": 1,
    "document_title": None,
    "start_char_index": 0,
    "end_char_index": 3,
}
_ANTHROPIC_BLOCKS: list[dict[str, Any]] = [
    {"type": "text", "text": "The report "},
    {"type": "text", "text": "says hello", "citations": [_PAGE_CITATION]},
    {"type": "text", "text": " and lists a,b.", "citations": [_CHAR_CITATION]},
]
_CITED_PROMPT = [
    {
        "role": "user",
        "content": [
            {"type": "document", "document": PDF, "name": "greeting.pdf", "citations": True},
            {"type": "document", "document": b"a,b\n1,2\n", "mime_type": "text/csv", "citations": True},
            "what do they say?",
        ],
    }
]
_EXPECTED_CITATIONS = [
    Citation("The first page says hello.", 0, "greeting.pdf", "page", 1, 2, 11, 21),
    Citation("a,b", 1, None, "char", 0, 3, 21, 36),
]


def _anthropic_stream() -> Any:
    events = [fa.message_start()]
    for index, block in enumerate(_ANTHROPIC_BLOCKS):
        events.append(fa.content_block_start(index, {"type": "text", "text": ""}))
        for cited in block.get("citations", ()):
            events.append(fa.citations_delta(index, cited))
        half = len(block["text"]) // 2
        events += [fa.text_delta(index, block["text"][:half]), fa.text_delta(index, block["text"][half:])]
        events.append(fa.content_block_stop(index))
    events += [fa.message_delta(), fa.message_stop()]
    return fa.stream_reply(events)


def test_anthropic_citations_streamed_equal_non_streamed(fake_server: FakeServer) -> None:
    client = client_for("anthropic", fake_server)
    fake_server.queue(fa.message_reply(_ANTHROPIC_BLOCKS))
    answer = client.complete(_CITED_PROMPT, model="anthropic/claude-sonnet-4-5")
    assert answer.text == "The report says hello and lists a,b."
    assert answer.citations == _EXPECTED_CITATIONS
    assert answer.text[11:21] == "says hello"

    fake_server.queue(_anthropic_stream())
    stream = client.stream(_CITED_PROMPT, model="anthropic/claude-sonnet-4-5")
    chunks = list(stream)
    assert [c for chunk in chunks for c in chunk.citations] == _EXPECTED_CITATIONS
    assert stream.completion.text == answer.text
    assert stream.completion.citations == answer.citations
    assert answer.to_dict()["citations"][0]["location"] == "page"


_BEDROCK_PAGE = {
    "title": "greeting",
    "sourceContent": [{"text": "The first page says hello."}],
    "location": {"documentPage": {"documentIndex": 0, "start": 1, "end": 2}},
}
_BEDROCK_CHUNK = {
    "title": "table",
    "sourceContent": [{"text": "a,b"}],
    "location": {"documentChunk": {"documentIndex": 1, "start": 0, "end": 1}},
}
_BEDROCK_EXPECTED = [
    Citation("The first page says hello.", 0, "greeting", "page", 1, 2, 11, 21),
    Citation("a,b", 1, "table", "chunk", 0, 1, 21, 36),
]


def _bedrock_stream() -> Any:
    frames = [fb.event_frame("messageStart", {"role": "assistant"})]
    blocks = [("The report ", None), ("says hello", _BEDROCK_PAGE), (" and lists a,b.", _BEDROCK_CHUNK)]
    for index, (text, cited) in enumerate(blocks):
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            frames.append(fb.event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        if cited is not None:
            delta = {"citation": cited}
            frames.append(fb.event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        frames.append(fb.event_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(fb.event_frame("messageStop", {"stopReason": "end_turn"}))
    frames.append(fb.event_frame("metadata", {"usage": fb.converse_usage(), "metrics": {"latencyMs": 9}}))
    return fb.stream_reply(frames)


def test_bedrock_citations_streamed_equal_non_streamed(fake_server: FakeServer, aws: None) -> None:
    # Before: the text of a citationsContent block was dropped from the answer, without a word.
    content = [
        {"text": "The report "},
        {"citationsContent": {"content": [{"text": "says hello"}], "citations": [_BEDROCK_PAGE]}},
        {"citationsContent": {"content": [{"text": " and lists a,b."}], "citations": [_BEDROCK_CHUNK]}},
    ]
    fake_server.queue(
        Reply(
            body={
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "end_turn",
                "usage": fb.converse_usage(),
                "metrics": {"latencyMs": 5},
            }
        )
    )
    client = client_for("bedrock", fake_server)
    model = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    answer = client.complete(_CITED_PROMPT, model=model)
    assert answer.text == "The report says hello and lists a,b."
    assert answer.citations == _BEDROCK_EXPECTED

    fake_server.queue(_bedrock_stream())
    stream = client.stream(_CITED_PROMPT, model=model)
    list(stream)
    assert stream.completion.text == answer.text
    assert stream.completion.citations == answer.citations
    blocks = fake_server.requests[0].json()["messages"][0]["content"]
    assert [b["document"].get("citations") for b in blocks[:2]] == [{"enabled": True}, {"enabled": True}]


def test_openai_file_citations_streamed_equal_non_streamed(fake_server: FakeServer) -> None:
    fake = foa.FakeOpenAI(fake_server)
    notes = [
        {"type": "file_citation", "file_id": "file-abc", "filename": "report.pdf", "index": 16},
        {"type": "url_citation", "url": "https://example.com", "title": "web", "start_index": 0, "end_index": 3},
    ]
    answer_text = "The report says hello."
    fake.answer(
        foa.Answer(answer_text, annotations=notes, model="gpt-5"),
        foa.Answer(answer_text, annotations=notes, model="gpt-5"),
    )
    client = client_for("openai", fake_server)
    prompt = [{"role": "user", "content": ["what does it say?", {"type": "document", "document": PDF}]}]
    answer = client.complete(prompt, model="openai/gpt-5")
    assert answer.citations == [Citation("", None, "report.pdf", None, None, None, 16, 16)]
    stream = client.stream(prompt, model="openai/gpt-5")
    list(stream)
    assert stream.completion.text == answer_text
    assert stream.completion.citations == answer.citations


def test_an_image_in_an_assistant_turn_to_ollama_is_refused_not_dropped(fake_server: FakeServer) -> None:
    # Before: Ollama's assistant message carried the text only, and the image vanished.
    png = b"\x89PNG\r\n\x1a\n" + bytes(20)
    prompt = [
        {"role": "user", "content": "draw"},
        {"role": "assistant", "content": ["here it is", {"type": "image", "image": png}]},
        {"role": "user", "content": "again"},
    ]
    with pytest.raises(UnsupportedFeatureError, match="images in assistant messages"):
        client_for("ollama", fake_server).complete(prompt, model="ollama/llama3.2-vision")
    assert fake_server.requests == []


def test_media_parts_and_citations_survive_batch_records_and_the_response_cache() -> None:
    from fmclient.batch import _part_from, _part_record
    from fmclient.cache import completion_from_json, completion_to_json
    from fmclient.types import Completion, Usage

    for part in (
        AudioPart.from_source(WAV),
        VideoPart.from_source("s3://bucket/clip.mp4"),
        DocumentPart(data=PDF, media_type="application/pdf", name="r.pdf", citations=True),
    ):
        assert _part_from(_part_record(part)) == part
    answer = Completion("says hello", "stop", Usage(1, 1), "m", "p", citations=list(_EXPECTED_CITATIONS))
    stored = completion_to_json(answer)
    assert stored is not None
    assert completion_from_json(stored).citations == _EXPECTED_CITATIONS


def test_request_totals_are_limits_too(fake_server: FakeServer, aws: None) -> None:
    with pytest.raises(UnsupportedFeatureError, match="bytes of inline media in one request"):
        Profile(max_media_bytes=1000).check(
            _request(AudioPart.from_source(WAV), DocumentPart.from_source(PDF)), provider="p"
        )
    with pytest.raises(UnsupportedFeatureError, match=r"2 documents in one request \(at most 1\)"):
        Profile(max_documents=1).check(
            _request(DocumentPart.from_source(PDF), DocumentPart.from_source(b"hi")), provider="p"
        )
    six = [{"type": "document", "document": f"note {n}".encode()} for n in range(6)]
    with pytest.raises(UnsupportedFeatureError, match="at most 5 documents"):
        client_for("bedrock", fake_server).complete(
            [{"role": "user", "content": ["compare", *six]}], model="bedrock/us.amazon.nova-pro-v1:0"
        )
    assert fake_server.requests == []


def test_gemini_names_mov_and_wmv_as_its_video_docs_do(fake_server: FakeServer) -> None:
    fake_server.default = fg.generate_reply("Two clips.")
    mov = mp4_head(b"qt  ")
    wmv = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11" + bytes(40)
    client_for("gemini", fake_server).complete(
        [{"role": "user", "content": ["compare", {"type": "video", "video": mov}, {"type": "video", "video": wmv}]}],
        model="gemini/gemini-3.8-flash",
    )
    blobs = [p["inlineData"] for p in fake_server.requests[0].json()["contents"][0]["parts"][1:]]
    assert [b.get("mimeType", b.get("mime_type")) for b in blobs] == ["video/mov", "video/wmv"]


def test_nova_2_omni_hears_audio_and_nova_lite_does_not() -> None:
    omni, lite = profile_for("us.amazon.nova-2-omni-v1:0", "bedrock"), profile_for("amazon.nova-lite-v1:0", "bedrock")
    assert (omni.audio, lite.audio) == (True, False)
    with pytest.raises(UnsupportedFeatureError, match="audio input"):
        lite.check(
            _request(AudioPart(data=WAV, media_type="audio/wav"), model="amazon.nova-lite-v1:0"), provider="bedrock"
        )
    omni.check(
        _request(AudioPart(data=WAV, media_type="audio/wav"), model="us.amazon.nova-2-omni-v1:0"), provider="bedrock"
    )
    # One request's inline media, images and video together, within Nova's 25 MB.
    big = VideoPart(data=mp4_head() + bytes(20 * 1024 * 1024), media_type="video/mp4")
    image = ImagePart(data=b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024), media_type="image/png")
    with pytest.raises(UnsupportedFeatureError, match="inline media"):
        lite.check(_request(big, image, model="amazon.nova-lite-v1:0"), provider="bedrock")
