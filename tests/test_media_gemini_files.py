"""Media above the Gemini API's inline limit go through its Files API: uploaded once (resumable,
``upload/{version}/files``), waited for until ACTIVE, referenced by ``file_data``. Driven through the
real google-genai SDK against the loopback fake, which speaks the upload protocol (X-Goog-Upload-*
headers, chunk offsets, finalize) and refuses a reference to a file that is not ACTIVE."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fmclient import Client
from fmclient.errors import BadRequestError, RequestTimeoutError, ServiceUnavailableError, UnsupportedFeatureError
from fmclient.providers import _gemini_files
from tests.fakes import gemini as fg
from tests.fakes.media import mp4_head, pdf, wav
from tests.fakes.server import FakeServer, RecordedRequest

KEY = "files-test-key"
MODEL = "gemini/gemini-3.8-flash"
MB = 1024 * 1024
#: Real media, padded past the 20 MB a request takes inline.
BIG_AUDIO = wav(0.25) + bytes(21 * MB)
BIG_VIDEO = mp4_head() + bytes(21 * MB)


@pytest.fixture(autouse=True)
def forget_uploads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _gemini_files.UPLOADED.clear()
    # The fake turns a video ACTIVE after a set number of polls: no need to wait seconds for it.
    monkeypatch.setattr(_gemini_files, "POLL_INTERVALS", (0.01,))
    yield
    _gemini_files.UPLOADED.clear()


@pytest.fixture
def api(fake_server: FakeServer) -> fg.GeminiAPI:
    api = fg.GeminiAPI("gemini", api_key=KEY)
    fake_server.handler = api
    return api


def client(server: FakeServer, **entries: dict[str, Any]) -> Client:
    providers = entries or {"gemini": {"base_url": server.url, "api_key": KEY}}
    return Client(providers=providers, max_retries=0)


def ask(kind: str, data: bytes, text: str = "what is in it?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [text, {"type": kind, kind: data}]}]


def generate_requests(server: FakeServer) -> list[RecordedRequest]:
    return [r for r in server.requests if ":generateContent" in r.path or ":streamGenerateContent" in r.path]


def upload_requests(server: FakeServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.startswith("/upload/")]


def sent_parts(request: RecordedRequest) -> list[dict[str, Any]]:
    from google.genai import types

    parts: list[dict[str, Any]] = request.json()["contents"][0]["parts"]
    for part in parts:
        types.Part.model_validate(part)  # every part is one the SDK's own types accept
    return parts


def file_ref(part: dict[str, Any]) -> tuple[str, str]:
    ref = part.get("fileData") or part["file_data"]
    return ref.get("fileUri") or ref["file_uri"], ref.get("mimeType") or ref["mime_type"]


def test_big_audio_is_uploaded_once_and_referenced(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.queue(fg.generate_reply("A quiet recording."))
    reply = client(fake_server).complete(ask("audio", BIG_AUDIO), model=MODEL)

    assert reply.text == "A quiet recording."
    assert api.files.starts == 1
    [name] = api.files.uploaded
    assert api.files.uploaded[name] == BIG_AUDIO  # every byte arrived, in order
    start, *chunks = upload_requests(fake_server)
    assert start.headers["x-goog-upload-protocol"] == "resumable"
    assert start.headers["x-goog-upload-header-content-length"] == str(len(BIG_AUDIO))
    assert start.headers["x-goog-upload-header-content-type"] == "audio/wav"
    assert start.headers["x-goog-api-key"] == KEY
    assert len(chunks) == 3  # 8 MB chunks, the last one finalizes
    assert chunks[-1].headers["x-goog-upload-command"] == "upload, finalize"
    [sent] = generate_requests(fake_server)
    text, ref = sent_parts(sent)
    assert text == {"text": "what is in it?"}
    assert file_ref(ref) == (f"https://generativelanguage.googleapis.com/v1beta/{name}", "audio/wav")
    assert len(sent.body) < MB  # the bytes were not sent inline as well


def test_only_the_largest_parts_are_uploaded_until_the_rest_fits(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    audio = wav(0.25) + bytes(12 * MB)
    document = pdf(["Quarterly figures."]) + b"\n%" + bytes(11 * MB)
    api.queue(fg.generate_reply("Both read."))
    prompt = [
        {
            "role": "user",
            "content": ["sum up", {"type": "audio", "audio": audio}, {"type": "document", "document": document}],
        }
    ]
    client(fake_server).complete(prompt, model=MODEL)

    [name] = api.files.uploaded
    assert api.files.uploaded[name] == audio
    _, uploaded, inline = sent_parts(generate_requests(fake_server)[0])
    assert file_ref(uploaded)[1] == "audio/wav"
    blob = inline.get("inlineData") or inline["inline_data"]
    assert base64.urlsafe_b64decode(blob["data"] + "==") == document


def test_a_big_pdf_is_uploaded_and_referenced(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    document = pdf(["Page one.", "Page two."]) + b"\n%" + bytes(21 * MB)
    api.queue(fg.generate_reply("Two pages."))
    client(fake_server).complete(ask("document", document), model=MODEL)

    [name] = api.files.uploaded
    assert api.files.uploaded[name] == document
    assert file_ref(sent_parts(generate_requests(fake_server)[0])[1])[1] == "application/pdf"


def test_the_same_bytes_in_two_calls_and_a_fallback_of_the_same_account_upload_once(
    fake_server: FakeServer, api: fg.GeminiAPI
) -> None:
    same_account = {"base_url": fake_server.url, "api_key": KEY, "type": "gemini"}
    fmc = client(fake_server, gemini=same_account, backup=same_account)
    api.queue(fg.generate_reply("first"), fg.generate_reply("second"), fg.error_reply(503), fg.generate_reply("third"))
    fmc.complete(ask("audio", BIG_AUDIO), model=MODEL)
    fmc.complete(ask("audio", BIG_AUDIO, "and again?"), model=MODEL)
    # The first entry fails after its (remembered) file is referenced; the fallback to another
    # entry of the same account references the same file.
    third = fmc.complete(ask("audio", BIG_AUDIO), model=MODEL, fallbacks=["backup/gemini-3.8-flash"])

    assert third.text == "third" and third.provider == "backup"
    assert api.files.starts == 1
    refs = {file_ref(sent_parts(r)[1]) for r in generate_requests(fake_server)}
    assert len(refs) == 1 and len(generate_requests(fake_server)) == 4


def test_another_account_uploads_its_own_copy(fake_server: FakeServer) -> None:
    first, second = fg.GeminiAPI("gemini", api_key=KEY), fg.GeminiAPI("gemini", api_key="other-key")
    fake_server.handler = first
    first.queue(fg.generate_reply("mine"))
    client(fake_server).complete(ask("audio", BIG_AUDIO), model=MODEL)
    fake_server.handler = second
    second.queue(fg.generate_reply("theirs"))
    other = {"gemini": {"base_url": fake_server.url, "api_key": "other-key"}}
    client(fake_server, **other).complete(ask("audio", BIG_AUDIO), model=MODEL)

    assert (first.files.starts, second.files.starts) == (1, 1)


def test_a_retry_after_the_upload_references_the_file_again(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.queue(fg.error_reply(503), fg.generate_reply("after a retry"))
    fmc = Client(providers={"gemini": {"base_url": fake_server.url, "api_key": KEY}}, max_retries=1)
    reply = fmc.complete(ask("audio", BIG_AUDIO), model=MODEL)

    assert reply.text == "after a retry"
    assert api.files.starts == 1  # the upload that succeeded is never made again
    first, second = generate_requests(fake_server)
    assert file_ref(sent_parts(first)[1]) == file_ref(sent_parts(second)[1])


def test_a_file_about_to_expire_is_uploaded_again(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.queue(fg.generate_reply("one"), fg.generate_reply("two"))
    fmc = client(fake_server)
    fmc.complete(ask("audio", BIG_AUDIO), model=MODEL)
    [(key, file)] = list(_gemini_files.UPLOADED._files.items())
    _gemini_files.UPLOADED.put(key, dataclasses.replace(file, expires_at=time.time() + 60))
    fmc.complete(ask("audio", BIG_AUDIO), model=MODEL)

    assert api.files.starts == 2
    first, second = (file_ref(sent_parts(r)[1]) for r in generate_requests(fake_server))
    assert first != second


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (fg.error_reply(503, "The service is currently unavailable."), ServiceUnavailableError),
        (fg.error_reply(400, "Invalid upload."), BadRequestError),
    ],
)
def test_a_failed_upload_is_a_typed_error_and_nothing_is_generated(
    fake_server: FakeServer, api: fg.GeminiAPI, failure: Any, error: type[Exception]
) -> None:
    api.files.fail_next = failure
    with pytest.raises(error):
        client(fake_server).complete(ask("audio", BIG_AUDIO), model=MODEL)
    assert generate_requests(fake_server) == []
    assert len(_gemini_files.UPLOADED) == 0  # nothing remembered: the next call uploads afresh


def test_a_video_in_processing_becomes_active_before_the_call(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.files.processing_polls = 2
    api.queue(fg.generate_reply("A short clip."))
    reply = client(fake_server).complete(ask("video", BIG_VIDEO), model=MODEL)

    assert reply.text == "A short clip."
    [name] = api.files.uploaded
    assert api.files.polls[name] == 3  # PROCESSING, PROCESSING, ACTIVE
    gets = [r for r in fake_server.requests if r.method == "GET"]
    assert len(gets) == 3 and all(r.path.endswith(f"/{name}") for r in gets)
    assert all(r.headers["x-goog-api-key"] == KEY for r in gets)
    # The fake answers FAILED_PRECONDITION to a file that is not ACTIVE: this one was.
    assert file_ref(sent_parts(generate_requests(fake_server)[0])[1])[1] == "video/mp4"


def test_a_video_still_processing_at_the_deadline_is_a_timeout_and_nothing_is_generated(
    fake_server: FakeServer, api: fg.GeminiAPI
) -> None:
    api.files.processing_polls = 10**9
    with pytest.raises(RequestTimeoutError, match="process"):
        client(fake_server).complete(ask("video", BIG_VIDEO), model=MODEL, timeout=3)
    assert generate_requests(fake_server) == []
    assert api.files.starts == 1


def test_async_and_streamed_calls_upload_too(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.queue(fg.generate_reply("async"), fg.stream_reply(fg.stream_events(["stre", "amed"])))
    fmc = client(fake_server)
    assert asyncio.run(fmc.acomplete(ask("audio", BIG_AUDIO), model=MODEL)).text == "async"
    assert "".join(c.text or "" for c in fmc.stream(ask("audio", BIG_AUDIO), model=MODEL)) == "streamed"

    assert api.files.starts == 1
    assert len({file_ref(sent_parts(r)[1]) for r in generate_requests(fake_server)}) == 1


def test_vertex_refuses_big_inline_media_with_the_reason(fake_server: FakeServer) -> None:
    vertex = {"type": "gemini", "base_url": fake_server.url, "vertexai": True, "api_key": KEY}
    with pytest.raises(UnsupportedFeatureError, match="Vertex AI has no Files API"):
        Client(providers={"vertex": vertex}, max_retries=0).complete(
            ask("audio", BIG_AUDIO), model="vertex/gemini-3.8-flash"
        )
    assert fake_server.requests == []


def test_media_too_big_even_for_the_files_api_is_refused_unsent(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    document = pdf(["Too long."]) + b"\n%" + bytes(50 * MB)
    with pytest.raises(UnsupportedFeatureError, match="52,428,800"):
        client(fake_server).complete(ask("document", document), model=MODEL)
    assert fake_server.requests == []


def test_a_long_recording_to_transcribe_is_uploaded_too(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    api.queue(fg.generate_reply("silence, mostly"), fg.generate_reply("silence again"))
    fmc = client(fake_server)
    assert fmc.transcribe(BIG_AUDIO, model=MODEL).text == "silence, mostly"
    assert asyncio.run(fmc.atranscribe(BIG_AUDIO, model=MODEL)).text == "silence again"

    assert api.files.starts == 1
    for sent in generate_requests(fake_server):
        instruction, audio = sent_parts(sent)
        assert "transcri" in instruction["text"].lower() and file_ref(audio)[1] == "audio/wav"


def test_concurrent_calls_with_the_same_bytes_share_one_upload(fake_server: FakeServer, api: fg.GeminiAPI) -> None:
    import threading

    api.queue(*(fg.generate_reply("heard") for _ in range(4)))
    fmc = client(fake_server)
    replies: list[str] = []
    threads = [
        threading.Thread(target=lambda: replies.append(fmc.complete(ask("audio", BIG_AUDIO), model=MODEL).text))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def two_at_once() -> list[str]:
        _gemini_files.UPLOADED.clear()
        answers = await asyncio.gather(*(fmc.acomplete(ask("audio", BIG_AUDIO), model=MODEL) for _ in range(2)))
        return [answer.text for answer in answers]

    assert replies == ["heard", "heard"] and api.files.starts == 1
    assert asyncio.run(two_at_once()) == ["heard", "heard"] and api.files.starts == 2
