"""Where the bytes of a media part come from, and what they are: one home for images, audio,
video and documents.

A part's source is bytes, a ``pathlib.Path`` (or an explicit ``path`` field), a data URI, or a
URL the provider fetches itself (which schemes depends on the kind: see ``URL_SCHEMES``). A
string is never read as a file: a server that forwards its users' messages must not let them
read its disk. The MIME type is the caller's, or sniffed from the bytes (with a file name's
extension to tell text formats and Office files apart); a type that cannot be told is refused
with the reason, never guessed.

Imports nothing from fmclient (the data layer builds on it) and only the standard library.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterator
from typing import Literal

__all__ = [
    "URL_SCHEMES",
    "MediaKind",
    "MediaSource",
    "canonical_mime",
    "is_pcm",
    "load",
    "pcm_as_wav",
    "pdf_page_count",
    "wav_seconds",
]

MediaKind = Literal["image", "audio", "video", "document"]

#: The URL schemes a part's URL field takes, per kind. gs:// and s3:// are passed only to the
#: hosts that read that storage (the adapters refuse them elsewhere).
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "image": ("https://", "http://", "gs://", "s3://"),
    "audio": ("gs://", "s3://"),
    "video": ("gs://", "s3://"),
    "document": ("https://", "http://", "gs://", "s3://"),
}

# Other names the same formats go by, mapped to one spelling, so a declared type compares
# with a sniffed one and a profile lists each format once.
_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-flac": "audio/flac",
    "audio/x-aiff": "audio/aiff",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/vorbis": "audio/ogg",
    "audio/opus": "audio/ogg",
    "audio/x-aac": "audio/aac",
    "video/x-msvideo": "video/avi",
    "video/mpg": "video/mpeg",
    "image/jpg": "image/jpeg",
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
}

_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

# Extensions, for what the bytes alone do not tell (text formats, the Office ZIP family) and for
# URLs (whose bytes are not here). The standard library's mimetypes depends on the machine's
# /etc/mime.types, so the table is ours.
_BY_EXTENSION = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".weba": "audio/webm",
    ".mka": "audio/x-matroska",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/avi",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg",
    ".flv": "video/x-flv",
    ".wmv": "video/x-ms-wmv",
    ".3gp": "video/3gpp",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "text/xml",
    ".json": "application/json",
    ".docx": _DOCX,
    ".xlsx": _XLSX,
    ".pptx": _PPTX,
    ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

_KIND_PREFIX = {"image": ("image/",), "audio": ("audio/",), "video": ("video/",), "document": ("application/", "text/")}


def canonical_mime(media_type: str) -> str:
    """``media_type`` lower-cased, without parameters, under its one spelling (``audio/x-wav`` ->
    ``audio/wav``)."""
    base = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


class MediaSource:
    """What :func:`load` found: inline ``data`` or a ``url``, the MIME type, and the file name
    where there was one (a path's or a URL's last segment)."""

    __slots__ = ("data", "filename", "media_type", "url")

    def __init__(self, data: bytes | None, url: str | None, media_type: str | None, filename: str | None) -> None:
        self.data = data
        self.url = url
        self.media_type = media_type
        self.filename = filename


def not_a_url(kind: MediaKind) -> str:
    schemes = ", ".join(URL_SCHEMES[kind])
    return (
        f"a{'n' if kind in ('image', 'audio') else ''} {kind} URL must be a data: URI or {schemes}; local files "
        f"are read only from a pathlib.Path or an explicit path ({{'type': '{kind}', 'path': ...}} or "
        f"{kind.capitalize()}Part.from_path)"
    )


def load(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    kind: MediaKind,
    media_type: str | None = None,
    *,
    path: bool = False,
) -> MediaSource:
    """Resolve a part's source: bytes, a ``pathlib.Path`` (or any str when ``path`` is True: the
    caller's explicit path field), a data URI or a URL of a scheme this kind takes. Raises
    ``ValueError`` / ``TypeError`` with the reason: an empty source, a file not found, a string
    that is not a URL, a type that cannot be told."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return MediaSource(data, None, resolve_type(data, kind, media_type, None, f"{kind} bytes"), None)
    if isinstance(source, os.PathLike) or (path and isinstance(source, str)):
        return _from_file(source, kind, media_type)
    if not isinstance(source, str):
        raise TypeError(f"{kind} must be bytes, a pathlib.Path, a URL or a data URI, not {type(source).__name__}")
    if source.startswith("data:"):
        header, sep, payload = source.partition(",")
        if not sep or ";base64" not in header:
            raise ValueError(f"{kind} data URI must be base64-encoded: data:<type>;base64,<data>")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{kind} data URI is not valid base64: {exc}") from None
        declared = media_type
        if declared is None:
            # The URI's own header is a weaker word than the caller's: the bytes win where they tell.
            sniffed = sniff(data, kind) if data else None
            declared = None if sniffed and sniffed.startswith(_KIND_PREFIX[kind]) else header[5:].split(";")[0] or None
        return MediaSource(data, None, resolve_type(data, kind, declared, None, f"{kind} data URI"), None)
    if source.startswith(URL_SCHEMES[kind]):
        name = source.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1] or None
        guessed = media_type or _by_extension(name)
        return MediaSource(None, source, canonical_mime(guessed) if guessed else None, name)
    raise ValueError(not_a_url(kind))


def _from_file(file_path: str | os.PathLike[str], kind: MediaKind, media_type: str | None) -> MediaSource:
    # pathlib costs ~6 ms to import (urllib, ipaddress): paid only when a part is a file.
    from pathlib import Path

    file = Path(file_path)
    if not file.is_file():
        raise ValueError(f"{kind} file not found: {file}")
    data = file.read_bytes()
    return MediaSource(data, None, resolve_type(data, kind, media_type, file.name, f"{kind} file {file}"), file.name)


def _by_extension(name: str | None) -> str | None:
    if not name or "." not in name:
        return None
    return _BY_EXTENSION.get("." + name.rsplit(".", 1)[1].lower())


def resolve_type(data: bytes, kind: MediaKind, declared: str | None, filename: str | None, what: str) -> str:
    """The MIME type of ``data`` for a part of ``kind``: the declared one (checked against the
    bytes where they tell), else sniffed, else from the file name's extension. Refuses an empty
    source, a type of another kind, and a type that cannot be told."""
    if not data:
        raise ValueError(f"{what} is empty")
    sniffed = sniff(data, kind, filename)
    if declared:
        wanted = canonical_mime(declared)
        if not wanted.startswith(_KIND_PREFIX[kind]):
            raise ValueError(f"{what}: {declared!r} is not a{'n' if kind in ('image', 'audio') else ''} {kind} type")
        if sniffed is not None and not _compatible(wanted, sniffed):
            raise ValueError(f"{what} is declared {declared!r} but its bytes are {sniffed}")
        return wanted
    if kind == "image" and (sniffed is None or not sniffed.startswith("image/")):
        raise ValueError(f"{what} is not a PNG, JPEG, GIF or WebP image")
    if sniffed is None:
        by_name = _by_extension(filename)
        if by_name is not None and by_name.startswith(_KIND_PREFIX[kind]):
            return by_name  # the bytes do not tell (a headerless stream): the file's name does
        raise ValueError(f"{what}: {_unknown(kind, filename)}")
    if not sniffed.startswith(_KIND_PREFIX[kind]):
        raise ValueError(f"{what} is {sniffed}, not a{'n' if kind in ('image', 'audio') else ''} {kind}")
    return sniffed


def _compatible(declared: str, sniffed: str) -> bool:
    # The container tells the family, not always the exact type: an MP4 container is audio/mp4
    # or video/mp4, WebM and Ogg carry audio or video, text is any text/* (or JSON).
    if declared == sniffed:
        return True
    if declared.split("/")[1] == sniffed.split("/")[1]:
        return True
    if sniffed.startswith("text/") and (declared.startswith("text/") or declared == "application/json"):
        return True
    return (declared, sniffed) in {("video/quicktime", "video/mp4"), ("audio/mp4", "video/quicktime")}


def _unknown(kind: MediaKind, filename: str | None = None) -> str:
    known = {
        "image": "PNG, JPEG, GIF or WebP",
        "audio": "WAV, MP3, FLAC, OGG, WebM, Matroska, M4A/MP4, AAC or AIFF",
        "video": "MP4, MOV, WebM, MKV, AVI, MPEG, FLV or 3GP",
        "document": "PDF, DOCX, XLSX, PPTX or UTF-8 text (plain, CSV, Markdown, HTML)",
    }[kind]
    name = f" and {filename!r} has no known {kind} extension" if filename else ""
    return f"its type could not be told from its bytes (it is not {known}){name}; pass mime_type= to say what it is"


def sniff(data: bytes, kind: MediaKind, filename: str | None = None) -> str | None:
    """The MIME type ``data`` starts with (for a container that holds audio or video, the one of
    ``kind``); ``None`` when the bytes do not tell."""
    head = data[:16]
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF":
        return {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/avi"}.get(head[8:12])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head[4:8] == b"ftyp":
        return _iso_media(data, kind)
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM or Matroska, as its header's DocType says
        container = "webm" if _ebml_doctype(data) == "webm" else "x-matroska"
        return f"audio/{container}" if kind == "audio" else f"video/{container}"
    if head[:4] == b"OggS":
        return "video/ogg" if kind == "video" else "audio/ogg"
    if head[:3] == b"ID3":
        return "audio/mpeg"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # An MPEG audio frame sync (11 bits) with a layer (III/II/I) is MP3; ADTS AAC has a
        # 12-bit sync and layer bits 00. Layer 00 after an 11-bit sync is no format.
        if head[1] & 0x06:
            return "audio/mpeg"
        return "audio/aac" if head[1] & 0xF0 == 0xF0 else None
    if head[:4] == b"\x00\x00\x01\xba" or head[:4] == b"\x00\x00\x01\xb3":
        return "video/mpeg"
    if head[:4] == b"PK\x03\x04":
        return _office(data, filename)
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # OLE2: legacy .doc / .xls
        by_name = _by_extension(filename)
        return by_name if by_name in ("application/msword", "application/vnd.ms-excel") else None
    if kind == "document" and _is_text(data):
        by_name = _by_extension(filename)
        if by_name is not None and (by_name.startswith("text/") or by_name == "application/json"):
            return by_name
        return "text/plain"
    return None


def _iso_media(data: bytes, kind: MediaKind) -> str:
    """An ISO base media file (MP4, M4A, MOV, 3GP) by the major brand of its ``ftyp`` box. A
    brand that does not tell audio from video (``isom``, ``mp42``, ``dash``...) leaves it to the
    kind of part it came as: an MP4 sent as audio is audio/mp4 (a transcription takes it), the
    same file sent as video is video/mp4."""
    brand = data[8:12]
    if brand in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    if brand.startswith(b"3g"):
        return "video/3gpp"
    if brand == b"qt  ":
        return "video/quicktime"
    return "audio/mp4" if kind == "audio" else "video/mp4"


def _ebml_doctype(data: bytes) -> str | None:
    """The DocType of an EBML header ("webm", "matroska"), or None where the header names none
    (EBML's default is then "matroska") or is cut short. Elements are (ID, size, payload), both
    numbers as EBML variable-length integers."""

    def vint(at: int, keep_marker: bool) -> tuple[int, int] | None:
        if at >= len(data) or data[at] == 0:
            return None
        length = 9 - data[at].bit_length()  # the leading zero bits, plus the marker bit
        if at + length > len(data):
            return None
        value = data[at] if keep_marker else data[at] & (0xFF >> length)
        for byte in data[at + 1 : at + length]:
            value = value << 8 | byte
        return value, at + length

    header = vint(4, keep_marker=False)
    if header is None:
        return None
    size, at = header
    end = min(at + size, len(data), 4096)
    while at < end:
        element, size_at = vint(at, keep_marker=True) or (None, 0)
        found = vint(size_at, keep_marker=False) if element is not None else None
        if found is None:
            return None
        size, at = found
        if element == 0x4282:  # DocType
            return data[at : at + size].rstrip(b"\x00").decode("ascii", "replace")
        at += size
    return None


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"fLaC", "audio/flac"),
    (b"FLV\x01", "video/x-flv"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "video/x-ms-wmv"),
)


def _office(data: bytes, filename: str | None) -> str | None:
    """A ZIP: an Office Open XML document by the part it holds (word/, xl/, ppt/)."""
    import io
    import zipfile

    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    for prefix, media_type in (("word/", _DOCX), ("xl/", _XLSX), ("ppt/", _PPTX)):
        if any(name.startswith(prefix) for name in names):
            return media_type
    return None


def _is_text(data: bytes) -> bool:
    sample = data[:65536]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(sample) - 3 and len(data) > len(sample)
    return True


def wav_seconds(data: bytes) -> float | None:
    """A WAV's duration from its header and the bytes there are (a streamed WAV, as
    ``espeak-ng --stdout`` writes, declares no real length), or None when it is not a WAV."""
    if not (data[:4] == b"RIFF" and data[8:12] == b"WAVE"):
        return None
    import struct

    offset, rate, frame_bytes = 12, 0, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt " and size >= 16:
            channels, rate = struct.unpack_from("<HI", data, offset + 10)
            bits = struct.unpack_from("<H", data, offset + 22)[0]
            frame_bytes = channels * max(bits // 8, 1)
        elif chunk == b"data":
            if not rate or not frame_bytes:
                return None
            available = min(size, len(data) - offset - 8)
            return float(available / frame_bytes / rate)
        offset += 8 + size + (size & 1)
    return None


def pdf_page_count(data: bytes) -> int | None:
    """The pages of a PDF: its page tree's ``/Count`` (the root's, the largest), else its
    ``/Type /Page`` objects. None when neither is found (a compressed object stream).

    Writers put the page tree's root near the end or the start of the file, so those 64 KiB are
    looked at first (4 µs): the root is the ``/Type /Pages`` dictionary without a ``/Parent``.
    Else one pass over the whole file (0.3 ms for a scanned 10-page PDF of 1 MB, 7% of the
    call's own CPU time: the media bench)."""
    import re

    if not data.startswith(b"%PDF-"):
        return None
    window = 65536
    if len(data) > 2 * window:
        for end in (data[-window:], data[:window]):  # the end first: an update appends its new root
            for count, root in _page_tree_counts(end):
                if root:
                    return count
    counts = [count for count, _ in _page_tree_counts(data)]
    if counts:
        return max(counts)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    return pages or None


def is_pcm(mime_type: str | None) -> bool:
    """Whether a MIME type names raw PCM samples (which a player needs wrapped: :func:`pcm_as_wav`)."""
    return bool(mime_type) and str(mime_type).lower().startswith(("audio/l16", "audio/pcm"))


def pcm_as_wav(pcm: bytes, mime_type: str) -> bytes:
    """16-bit little-endian PCM as a WAV file; rate and channels from the MIME type's parameters
    (``audio/L16;codec=pcm;rate=24000``: Gemini's spoken answers, 24 kHz mono)."""
    import io
    import wave

    parameters = dict(item.strip().split("=", 1) for item in mime_type.split(";")[1:] if "=" in item)
    rate = int(parameters.get("rate", 24000))
    channels = int(parameters.get("channels", 1))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


def _page_tree_counts(data: bytes) -> Iterator[tuple[int, bool]]:
    """(count, is the root) of each page tree node (``/Type /Pages`` with a ``/Count``) in ``data``."""
    import re

    pages_type = re.compile(rb"/Type\s*/Pages\b")  # re caches the compiled patterns
    for found in re.finditer(rb"/Count\s+(\d+)", data):
        start = data.rfind(b"<<", max(0, found.start() - 4096), found.start())
        end = data.find(b">>", found.end(), found.end() + 4096)
        if start < 0 or end < 0:
            continue
        if pages_type.search(data, start, end):
            yield int(found.group(1)), data.find(b"/Parent", start, end) < 0
