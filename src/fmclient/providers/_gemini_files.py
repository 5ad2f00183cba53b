"""Media above the Gemini API's inline limit, through its Files API: uploaded once, then referenced.

A request whose inline media together exceed the profile's ``max_inline_media_bytes`` has its
largest inline parts uploaded (the SDK's ``files.upload``: a resumable upload to
``upload/{api_version}/files``) until the rest fits, and each uploaded part is sent as ``file_data``
(``file_uri`` + ``mime_type``). A file the API is still PROCESSING (a video) is waited for with
``files.get`` until it is ACTIVE, within the attempt's time.

Uploaded once: a small in-process map, keyed by the account (a one-way hash of the API key, so
every provider entry and host of one account shares it, and no key is held in clear) and the
bytes' SHA-256 and MIME type, remembers each file until shortly before the API deletes it
(48 hours). The entry is made as soon as an upload succeeds, so a retry of the attempt, a later
call, or a fallback to another Gemini API entry of the same account references the file instead
of uploading it again; a failed upload leaves nothing behind. Calls that need the same bytes at
the same time wait for the one upload under way (within their own time) instead of making their own.

SDK behaviour relied on (google-genai 3.x): ``files.upload`` takes a seekable binary stream and
sends it in 8 MB chunks; when a chunk's answer lacks the ``x-goog-upload-status`` header the SDK
itself re-sends that chunk (up to 3 times, 1-4 s apart): the real service always sets the header,
so fmclient's retry layer stays the only one in practice.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from fmclient.errors import BadRequestError, RequestTimeoutError, ServiceUnavailableError

__all__ = ["UPLOADED", "Deadline", "UploadedFile", "UploadedFiles", "account_of", "parts_to_upload"]

#: How long the Files API keeps a file.
FILE_LIFETIME = 48 * 3600.0
#: A remembered file is not referenced when it expires sooner than this (the call may be long).
EXPIRY_MARGIN = 15 * 60.0
#: Seconds between ``files.get`` polls of a file still PROCESSING: growing, then steady.
POLL_INTERVALS = (0.25, 0.5, 1.0, 2.0)
#: Seconds between looks of an async call waiting for another call's upload of the same bytes.
WAIT_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file in the Files API: its resource name, the URI a request references, its MIME type,
    when it expires (seconds since the epoch) and whether it is ACTIVE (usable)."""

    name: str
    uri: str
    mime_type: str
    expires_at: float
    active: bool


class UploadedFiles:
    """The in-process map of what was uploaded, by (account, content hash, MIME type)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], UploadedFile] = {}
        # Uploads under way, so that concurrent calls with the same bytes wait for the one upload.
        self._uploading: dict[tuple[str, str, str], threading.Event] = {}

    def claim(self, key: tuple[str, str, str]) -> UploadedFile | threading.Event | None:
        """The remembered file; else the event of an upload of the same bytes under way (wait for
        it, then claim again); else None: the caller uploads, and calls :meth:`release` after."""
        with self._lock:
            found = self._files.get(key)
            if found is not None and found.expires_at - EXPIRY_MARGIN > time.time():
                return found
            self._files.pop(key, None)
            if key in self._uploading:
                return self._uploading[key]
            self._uploading[key] = threading.Event()
            return None

    def release(self, key: tuple[str, str, str]) -> None:
        """The upload :meth:`claim` handed out is over (remembered, or failed)."""
        with self._lock:
            event = self._uploading.pop(key, None)
        if event is not None:
            event.set()

    def put(self, key: tuple[str, str, str], file: UploadedFile) -> None:
        with self._lock:
            self._files[key] = file

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._files.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            waiting, self._uploading = list(self._uploading.values()), {}
        for event in waiting:
            event.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)


#: Shared by every Gemini provider entry of the process.
UPLOADED = UploadedFiles()


def account_of(api_key: str | None, base_url: str | None) -> str:
    """Whose Files API this is: a one-way hash of the API key (files belong to its project), or
    of the endpoint when no key is set (a gateway that authenticates by itself)."""
    basis = f"key\0{api_key}" if api_key else f"url\0{base_url or ''}"
    return hashlib.sha256(b"fmclient-gemini-files\0" + basis.encode("utf-8", "surrogatepass")).hexdigest()


def content_key(account: str, data: bytes, mime_type: str) -> tuple[str, str, str]:
    return (account, hashlib.sha256(data).hexdigest(), mime_type)


def parts_to_upload(contents: list[Any], limit: int) -> list[tuple[int, int]]:
    """(content, part) positions of the inline parts to upload so that the inline bytes left
    are at most ``limit``: none when they already fit, else the largest first."""
    inline: list[tuple[int, int, int]] = []
    for c, content in enumerate(contents):
        for p, part in enumerate(getattr(content, "parts", None) or []):
            blob = getattr(part, "inline_data", None)
            data = getattr(blob, "data", None)
            if data:
                inline.append((len(data), c, p))
    total = sum(size for size, _, _ in inline)
    chosen: list[tuple[int, int]] = []
    for size, c, p in sorted(inline, key=lambda item: item[0], reverse=True):
        if total <= limit:
            break
        chosen.append((c, p))
        total -= size
    return chosen


class Deadline:
    """The time an attempt has (``timeout`` seconds from now; None: unbounded)."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self, *, provider: str, model: str, doing: str) -> float | None:
        """Seconds left; a :class:`RequestTimeoutError` naming what was being done when none are."""
        if self._end is None:
            return None
        left = self._end - time.monotonic()
        if left <= 0:
            raise RequestTimeoutError(
                f"the call's time ({self.timeout:g} s) ran out while {doing}", provider=provider, model=model
            )
        return left


def ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _http_options(seconds: float | None) -> dict[str, Any]:
    return {} if seconds is None else {"http_options": {"timeout": ms(seconds)}}


def _expiry(file: Any) -> float:
    expires = getattr(file, "expiration_time", None)
    if expires is not None and hasattr(expires, "timestamp"):
        return float(expires.timestamp())
    return time.time() + FILE_LIFETIME


def _state(file: Any) -> str:
    state = getattr(file, "state", None)
    return str(getattr(state, "value", state) or "")


def _remembered(file: Any, mime_type: str, *, provider: str, model: str) -> UploadedFile:
    name, uri = getattr(file, "name", None), getattr(file, "uri", None)
    if not isinstance(name, str) or not isinstance(uri, str) or not name or not uri:
        raise ServiceUnavailableError(
            "the Gemini Files API answered an upload without the file's name and URI", provider=provider, model=model
        )
    return UploadedFile(
        name, uri, getattr(file, "mime_type", None) or mime_type, _expiry(file), _state(file) == "ACTIVE"
    )


def _checked_state(file: Any, known: UploadedFile, key: tuple[str, str, str], *, provider: str, model: str) -> bool:
    """Whether ``file`` (a ``files.get`` answer) is ACTIVE; FAILED is a typed error (and the
    file is forgotten, so a later call uploads afresh)."""
    state = _state(file)
    if state == "FAILED":
        UPLOADED.forget(key)
        error = getattr(file, "error", None)
        detail = getattr(error, "message", None) or "no reason given"
        raise BadRequestError(
            f"the Gemini Files API could not process the uploaded {known.mime_type} ({known.name}): {detail}",
            provider=provider,
            model=model,
        )
    return state == "ACTIVE"


def upload(
    client: Any, data: bytes, mime_type: str, account: str, deadline: Deadline, *, provider: str, model: str
) -> UploadedFile:
    """The file holding ``data``: remembered, or uploaded now; ACTIVE when this returns."""
    key = content_key(account, data, mime_type)
    doing = "uploading media to the Gemini Files API"
    while isinstance(claimed := UPLOADED.claim(key), threading.Event):
        # Another call is uploading the same bytes: wait for it rather than upload them twice.
        claimed.wait(deadline.remaining(provider=provider, model=model, doing=doing))
    if claimed is None:
        try:
            left = deadline.remaining(provider=provider, model=model, doing=doing)
            file = _finished(
                lambda: client.files.upload(
                    file=io.BytesIO(data), config={"mime_type": mime_type, **_http_options(left)}
                ),
                provider=provider,
                model=model,
            )
            known = _remembered(file, mime_type, provider=provider, model=model)
            UPLOADED.put(key, known)
        finally:
            UPLOADED.release(key)
        polls = 1  # just uploaded: the first look is after a pause
    else:
        known = claimed
        polls = 0  # remembered from an earlier attempt: it may be ACTIVE by now, look at once
    while not known.active:
        pause, doing = _pause(polls, known, deadline, provider=provider, model=model)
        if pause:
            time.sleep(pause)
        polls += 1
        left = deadline.remaining(provider=provider, model=model, doing=doing)
        file = client.files.get(name=known.name, config=_http_options(left) or None)
        if _checked_state(file, known, key, provider=provider, model=model):
            known = _active(known)
            UPLOADED.put(key, known)
    return known


async def aupload(
    client: Any, data: bytes, mime_type: str, account: str, deadline: Deadline, *, provider: str, model: str
) -> UploadedFile:
    """The async twin of :func:`upload` (``client`` is the SDK client's ``aio``)."""
    key = content_key(account, data, mime_type)
    doing = "uploading media to the Gemini Files API"
    while isinstance(claimed := UPLOADED.claim(key), threading.Event):
        # Another call is uploading the same bytes: wait for it (without blocking the loop).
        while not claimed.is_set():
            deadline.remaining(provider=provider, model=model, doing=doing)
            await asyncio.sleep(WAIT_INTERVAL)
    if claimed is None:
        try:
            left = deadline.remaining(provider=provider, model=model, doing=doing)
            try:
                file = await client.files.upload(
                    file=io.BytesIO(data), config={"mime_type": mime_type, **_http_options(left)}
                )
            except (KeyError, ValueError) as exc:
                raise _unfinished(exc, provider=provider, model=model) from exc
            known = _remembered(file, mime_type, provider=provider, model=model)
            UPLOADED.put(key, known)
        finally:
            UPLOADED.release(key)
        polls = 1  # just uploaded: the first look is after a pause
    else:
        known = claimed
        polls = 0  # remembered from an earlier attempt: it may be ACTIVE by now, look at once
    while not known.active:
        pause, doing = _pause(polls, known, deadline, provider=provider, model=model)
        if pause:
            await asyncio.sleep(pause)
        polls += 1
        left = deadline.remaining(provider=provider, model=model, doing=doing)
        file = await client.files.get(name=known.name, config=_http_options(left) or None)
        if _checked_state(file, known, key, provider=provider, model=model):
            known = _active(known)
            UPLOADED.put(key, known)
    return known


def _pause(polls: int, known: UploadedFile, deadline: Deadline, *, provider: str, model: str) -> tuple[float, str]:
    """How long to wait before the next ``files.get`` of a file still PROCESSING; a
    :class:`RequestTimeoutError` when the wait would outlast the attempt."""
    doing = f"waiting for the Gemini Files API to process {known.name}"
    left = deadline.remaining(provider=provider, model=model, doing=doing)
    pause = POLL_INTERVALS[min(polls, len(POLL_INTERVALS)) - 1] if polls else 0.0
    if left is not None and pause >= left:
        raise RequestTimeoutError(
            f"the call's time ({deadline.timeout:g} s) ran out while {doing}", provider=provider, model=model
        )
    return pause, doing


def _active(known: UploadedFile) -> UploadedFile:
    return UploadedFile(known.name, known.uri, known.mime_type, known.expires_at, True)


def _finished(send: Any, *, provider: str, model: str) -> Any:
    try:
        return send()
    except (KeyError, ValueError) as exc:
        raise _unfinished(exc, provider=provider, model=model) from exc


def _unfinished(exc: Exception, *, provider: str, model: str) -> ServiceUnavailableError:
    # The SDK raises KeyError when the start answer has no upload URL and ValueError when the
    # last chunk's answer is not "final": the upload did not happen (nothing to remember).
    return ServiceUnavailableError(
        f"the upload to the Gemini Files API did not finish: {type(exc).__name__}: {exc}",
        provider=provider,
        model=model,
    )
