"""Normalised types: what goes into a model call and what comes back, whatever the provider.

Usage definition (the same for every provider, tested per adapter):

* ``input_tokens``: every input token the provider processed for the call, cache reads and
  cache writes included (Anthropic reports those separately; adapters add them up).
* ``cached_input_tokens``: the part of ``input_tokens`` that was read from a prompt cache.
* ``cache_write_tokens``: the part of ``input_tokens`` that was written to a prompt cache
  (cache creation; priced differently from plain input by the providers that report it), every
  write whatever its lifetime.
* ``cache_write_1h_tokens``: the part of ``cache_write_tokens`` written with a one-hour lifetime
  (Anthropic's ``cache_creation.ephemeral_1h_input_tokens``, Bedrock's ``cacheDetails`` with
  ``ttl = "1h"``), priced at the one-hour write price; the rest are five-minute writes.
* ``output_tokens``: generated tokens, reasoning/thinking tokens included.
* ``reasoning_tokens``: the part of ``output_tokens`` spent on reasoning/thinking.
* ``total_tokens``: ``input_tokens + output_tokens``.
* ``service_tier`` and ``speed``: how the provider says it served (and so bills) the call, where
  it says so and it is not the standard way: ``service_tier`` as the provider names it
  (OpenAI ``flex`` / ``priority``, Anthropic ``priority``, Gemini ``flex``, Bedrock
  ``priority`` / ``flex`` / ``reserved``), ``speed`` for Anthropic's fast mode (``"fast"``).
  ``None`` means standard. Cost applies the price of that tier, or is unknown (never the
  standard price) when the price table has none.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from fmclient import _media
from fmclient._media import MediaKind

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal

    #: Works out a result's (cost, reason), bound by the engine when the call ends (to
    #: fmclient.pricing.priced and the usage, or to price_media_units and the units billed on).
    Pricer = Callable[[], tuple["Cost | None", "str | None"]]

__all__ = [
    "AudioAnswer",
    "AudioPart",
    "CachePoint",
    "Chunk",
    "Citation",
    "Completion",
    "Cost",
    "DocumentPart",
    "EmbedRequest",
    "Embeddings",
    "FinishReason",
    "GeneratedImage",
    "ImagePart",
    "ImageRequest",
    "Images",
    "Message",
    "Part",
    "Request",
    "ResponseFormat",
    "Role",
    "Speech",
    "SpeechRequest",
    "TextPart",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "TranscriptSegment",
    "Transcription",
    "TranscriptionRequest",
    "Usage",
    "VideoPart",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))
FINISH_REASONS: frozenset[str] = frozenset(("stop", "length", "tool_calls", "content_filter", "other"))


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


_MediaT = TypeVar("_MediaT", bound="_MediaPart")


@dataclass(frozen=True, slots=True)
class _MediaPart:
    """What every media part shares: inline bytes or a URL the provider fetches, and a MIME type.

    Where the bytes come from is decided in one place (``fmclient._media``): bytes, a
    ``pathlib.Path``, a data URI, or a URL of a scheme the kind takes. A string is never read as
    a file: a server that forwards its users' messages must not let them read its disk.
    """

    _kind: ClassVar[MediaKind]
    data: bytes | None = None
    url: str | None = None
    media_type: str | None = None

    def __post_init__(self) -> None:
        kind = self._kind
        if self.data is None and self.url is None:
            raise ValueError(f"a{'n' if kind in ('image', 'audio') else ''} {kind} part needs data or a url")
        if self.url is not None and not (isinstance(self.url, str) and self.url.startswith(_media.URL_SCHEMES[kind])):
            raise ValueError(_media.not_a_url(kind))
        if self.data is not None and not self.data:
            raise ValueError(f"{kind} data is empty")

    @classmethod
    def from_source(
        cls: type[_MediaT], source: bytes | str | os.PathLike[str], media_type: str | None = None
    ) -> _MediaT:
        """From bytes, a ``pathlib.Path``, a data URI or a URL (a str is never read as a path)."""
        return cls._made(_media.load(source, cls._kind, media_type))

    @classmethod
    def from_url(cls: type[_MediaT], url: str, media_type: str | None = None) -> _MediaT:
        """From a URL field: a data URI (decoded here) or a URL of a scheme this kind takes
        (passed to the provider). Anything else, a file path or ``file://`` included, is refused
        without looking at the disk: the message is the same whether or not such a file exists."""
        if not isinstance(url, str):
            raise TypeError(f"{cls._kind} URL must be a str, not {type(url).__name__}")
        return cls._made(_media.load(url, cls._kind, media_type))

    @classmethod
    def from_path(cls: type[_MediaT], path: str | os.PathLike[str], media_type: str | None = None) -> _MediaT:
        """Read from a local file: only for paths your own code chose, never for a value a user
        sent (see :meth:`from_url`)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{cls._kind} path must be a str or a pathlib.Path, not {type(path).__name__}")
        return cls._made(_media.load(path, cls._kind, media_type, path=True))

    @classmethod
    def _made(cls: type[_MediaT], found: _media.MediaSource) -> _MediaT:
        return cls(data=found.data, url=found.url, media_type=found.media_type)

    @property
    def base64_data(self) -> str:
        if self.data is None:
            raise ValueError(f"this {self._kind} is a URL, it has no inline data")
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_uri(self) -> str:
        if self.data is None:
            assert self.url is not None
            return self.url
        return f"data:{self.media_type or 'application/octet-stream'};base64,{self.base64_data}"

    def __repr__(self) -> str:
        what = f"url={self.url!r}" if self.url else f"data=<{len(self.data or b'')} bytes>"
        return f"{type(self).__name__}({what}, media_type={self.media_type!r})"


@dataclass(frozen=True, slots=True, repr=False)
class ImagePart(_MediaPart):
    """An image in a user message: inline bytes, or a URL the provider fetches itself.

    Build one with :meth:`from_source` from bytes, a ``pathlib.Path``, an http(s) URL, a data URI
    or a provider storage URI (``gs://``, ``s3://``: passed to the hosts that read them), or with
    :meth:`from_path` from a file path. A string is never read as a file: a server that forwards
    its users' messages must not let them read its disk.
    """

    _kind: ClassVar[MediaKind] = "image"
    type: Literal["image"] = "image"


@dataclass(frozen=True, slots=True, repr=False)
class AudioPart(_MediaPart):
    """Audio in a user message: bytes, a ``pathlib.Path``, a data URI, or a ``gs://`` / ``s3://``
    URI for the hosts that read that storage. The MIME type is sniffed from the bytes (WAV, MP3,
    FLAC, OGG, WebM, M4A/MP4, AAC, AIFF) unless given; an unknown type is refused."""

    _kind: ClassVar[MediaKind] = "audio"
    type: Literal["audio"] = "audio"


@dataclass(frozen=True, slots=True, repr=False)
class VideoPart(_MediaPart):
    """A video in a user message: bytes, a ``pathlib.Path``, a data URI, or a ``gs://`` /
    ``s3://`` URI for the hosts that read that storage (Gemini on Vertex AI, Bedrock)."""

    _kind: ClassVar[MediaKind] = "video"
    type: Literal["video"] = "video"


@dataclass(frozen=True, slots=True, repr=False)
class DocumentPart(_MediaPart):
    """A document in a user message (PDF, plain text, CSV, Markdown, HTML, DOCX...): bytes, a
    ``pathlib.Path``, a data URI, an http(s) URL the provider fetches, or ``gs://`` / ``s3://``.

    ``name`` is how the model and citations refer to it (Bedrock requires one: the file name, or
    ``document-<n>``). ``citations=True`` asks the provider to cite it (Anthropic, Bedrock); the
    answer's :attr:`Completion.citations` hold what was cited.
    """

    _kind: ClassVar[MediaKind] = "document"
    name: str | None = None
    citations: bool = False
    type: Literal["document"] = "document"
    # The PDF's page count, counted once on first need: each host and fallback checks the limit,
    # and counting is a pass over the bytes.
    _pages: int | None = field(default=None, init=False, repr=False, compare=False)

    def page_count(self) -> int | None:
        """The pages of an inline PDF (its page tree's count), None for other documents or when
        the PDF does not say."""
        if self._pages is None and self.data is not None:
            object.__setattr__(self, "_pages", _media.pdf_page_count(self.data) or 0)
        return self._pages or None

    @classmethod
    def _made(cls, found: _media.MediaSource) -> DocumentPart:
        return cls(data=found.data, url=found.url, media_type=found.media_type, name=found.filename)

    def __repr__(self) -> str:
        what = f"url={self.url!r}" if self.url else f"data=<{len(self.data or b'')} bytes>"
        return f"DocumentPart({what}, media_type={self.media_type!r}, name={self.name!r})"


#: Every part that carries media (not text).
MediaPart = ImagePart | AudioPart | VideoPart | DocumentPart
MEDIA_PARTS = (ImagePart, AudioPart, VideoPart, DocumentPart)


def _sniff_image(data: bytes, what: str) -> str:
    """The image type of ``data`` by its signature, or ValueError naming ``what``."""
    found = _media.sniff(data, "image")
    if found is None or not found.startswith("image/"):
        raise ValueError(f"{what} is not a PNG, JPEG, GIF or WebP image")
    return found


def image_mime_type(data: bytes) -> str:
    """The MIME type of encoded image bytes, by their signature (a generated image's)."""
    try:
        return _sniff_image(data, "image")
    except ValueError:
        return "application/octet-stream"


Part = TextPart | ImagePart | AudioPart | VideoPart | DocumentPart
_PART_CLASSES: dict[str, type[_MediaPart]] = {
    "image": ImagePart,
    "audio": AudioPart,
    "video": VideoPart,
    "document": DocumentPart,
}


def part_from_input(value: Any, where: str) -> Part:
    """One content part as ``complete`` takes it (a str, a dict part, or a part) -> a typed part;
    ``where`` names it in an error (``messages[0].content[1]``)."""
    if isinstance(value, (TextPart, *MEDIA_PARTS)):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return TextPart(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a str or a dict part, not {type(value).__name__}")
    kind = value.get("type")
    if kind == "text":
        text = value.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{where}.text must be a str, not {type(text).__name__}")
        return TextPart(text)
    if kind in ("image", "image_url", "audio", "video", "document", "input_audio", "file"):
        try:
            return _media_part_from_input(value, _OPENAI_KINDS.get(kind, str(kind)))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    raise ValueError(f"{where}.type must be 'text', 'image', 'audio', 'video' or 'document', got {kind!r}")


# OpenAI's chat part spellings, taken as well: image_url, input_audio, file.
_OPENAI_KINDS = {"input_audio": "audio", "file": "document"}


def _media_part_from_input(value: Mapping[str, Any], kind: str) -> Part:
    """A media dict part. Only ``path`` (or a pathlib.Path value) reads a local file; ``url`` and
    OpenAI's ``image_url`` take URLs only; the kind's own key (``image``, ``audio``, ``video``,
    ``document``) and ``source`` take bytes, a Path or a URL; ``data`` bytes or a data URI. A
    string is never a path, so a forwarded message cannot read the server's files."""
    media_type = value.get("mime_type", value.get("media_type"))
    if media_type is not None and not isinstance(media_type, str):
        raise TypeError(f"mime_type must be a str, not {type(media_type).__name__}")
    if value.get("type") == "image_url":
        inner = value.get("image_url")
        url = inner.get("url") if isinstance(inner, Mapping) else inner
        if url is None:
            raise ValueError("an image_url part needs image_url.url (an http(s) URL or a data URI)")
        return ImagePart.from_url(url, media_type)
    if value.get("type") == "input_audio":
        inner = value.get("input_audio")
        if not isinstance(inner, Mapping) or not isinstance(inner.get("data"), str):
            raise ValueError("an input_audio part needs input_audio.data (base64) and input_audio.format")
        fmt = inner.get("format")
        return AudioPart.from_source(
            _b64(inner["data"], "input_audio.data"), media_type or _AUDIO_FORMATS.get(str(fmt))
        )
    if value.get("type") == "file":
        inner = value.get("file")
        data = inner.get("file_data") if isinstance(inner, Mapping) else None
        if not isinstance(data, str):
            raise ValueError("a file part needs file.file_data (a data URI or base64)")
        source: Any = data if data.startswith("data:") else _b64(data, "file.file_data")
        document = DocumentPart.from_source(source, media_type)
        name = inner.get("filename") if isinstance(inner, Mapping) else None
        return document if name is None else _replace(document, name=str(name))
    cls = _PART_CLASSES[kind]
    keys = (kind, "source", "url", "data", "path")
    given = [key for key in keys if value.get(key) is not None]
    article = "an" if kind in ("image", "audio") else "a"
    if not given:
        raise ValueError(f"{article} {kind} part needs '{kind}' (bytes, a pathlib.Path, a URL or a data URI) or 'path'")
    if len(given) > 1:
        raise ValueError(f"{article} {kind} part takes one of {', '.join(repr(k) for k in keys)}, got {given}")
    key = given[0]
    source = value[key]
    if key == "path":
        part: Part = cls.from_path(source, media_type)  # type: ignore[assignment]
    elif key == "url" or (key == "data" and isinstance(source, str)):
        part = cls.from_url(source, media_type)  # type: ignore[assignment]
    elif key == "data" and not isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError(f"{article} {kind} part's 'data' must be bytes or a data URI, not {type(source).__name__}")
    else:
        part = cls.from_source(source, media_type)  # type: ignore[assignment]
    if isinstance(part, DocumentPart):
        name, citations = value.get("name"), value.get("citations", False)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a document part's 'name' must be a str, not {type(name).__name__}")
        if not isinstance(citations, bool):
            raise TypeError(f"a document part's 'citations' must be True or False, not {citations!r}")
        part = _replace(part, name=name if name is not None else part.name, citations=citations)
    # A key nobody reads would be dropped without a word: refused instead.
    extra = set(value) - {
        "type",
        *keys,
        "mime_type",
        "media_type",
        *(("name", "citations") if kind == "document" else ()),
    }
    if extra:
        raise ValueError(f"{article} {kind} part takes no {', '.join(sorted(extra))}")
    return part


_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64: {exc}") from None


def _replace(part: DocumentPart, **changes: Any) -> DocumentPart:
    import dataclasses

    return dataclasses.replace(part, **changes)


@dataclass(frozen=True, slots=True)
class CachePoint:
    """A prompt-cache breakpoint: put one in a prompt list right after the message (or system
    message) that ends the prefix to cache. The provider caches everything up to it (tools and
    system prompt included).

    * Anthropic: ``cache_control`` on that message's last block (``ttl`` "5m" or "1h").
    * Bedrock Converse: a ``cachePoint`` block after it (with ``ttl`` when given).
    * OpenAI and Gemini cache long prefixes automatically: the breakpoint is accepted as a hint
      and sends nothing. Steer OpenAI with ``prompt_cache_key=...``; use a Gemini context cache
      with ``cached_content="cachedContents/..."`` (both provider options, passed through).
    * A model whose profile cannot cache (``Profile.prompt_caching``) refuses it with
      :class:`~fmclient.errors.UnsupportedFeatureError` before sending.
    """

    ttl: Literal["5m", "1h"] | None = None

    def __post_init__(self) -> None:
        if self.ttl not in (None, "5m", "1h"):
            raise ValueError(f"CachePoint ttl must be '5m' or '1h', got {self.ttl!r}")


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage of a document the answer cites, the same shape whoever cited it.

    ``document_index`` counts the documents of the request in order (0 is the first document
    part of the conversation); ``document_name`` is its name where the provider returns it.
    ``location`` says what ``start`` and ``end`` count: ``"page"`` (1-based pages, end
    exclusive), ``"char"`` (characters of the document's text, end exclusive) or ``"chunk"``
    (content blocks, end exclusive); None when the provider gives no place. ``answer_start`` /
    ``answer_end`` are the characters of :attr:`Completion.text` the citation supports, where known.
    """

    cited_text: str
    document_index: int | None = None
    document_name: str | None = None
    location: Literal["page", "char", "chunk"] | None = None
    start: int | None = None
    end: int | None = None
    answer_start: int | None = None
    answer_end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cited_text": self.cited_text,
            "document_index": self.document_index,
            "document_name": self.document_name,
            "location": self.location,
            "start": self.start,
            "end": self.end,
            "answer_start": self.answer_start,
            "answer_end": self.answer_end,
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made. ``arguments`` is the parsed JSON object the model wrote.

    When the reply was cut off by ``max_tokens`` in the middle of the arguments
    (``finish_reason == "length"``), they are not a JSON object: ``arguments`` is then ``{}`` and
    ``raw_arguments`` holds the text exactly as the model left it. It is ``None`` otherwise.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    ``provider_state`` carries what a provider needs back on the next turn (Anthropic thinking
    blocks, Gemini thought signatures), keyed by provider name; adapters read only their own key.
    """

    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    provider_state: Mapping[str, Any] | None = None
    #: a prompt-cache breakpoint right after this message (see :class:`CachePoint`)
    cache: CachePoint | None = None
    #: a tool result that reports the tool's failure: sent as Anthropic's ``is_error``, Bedrock's
    #: ``status: "error"`` and Gemini's ``error`` response (elsewhere the text says so alone)
    is_error: bool = False

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def parts(self) -> tuple[Part, ...]:
        if isinstance(self.content, str):
            return (TextPart(self.content),) if self.content else ()
        return self.content

    @classmethod
    def user(cls, content: str | Sequence[Any]) -> Message:
        """A user message: text, or a list of parts (str, dict parts as ``complete`` takes them,
        :class:`TextPart`, :class:`ImagePart`, :class:`AudioPart`, :class:`VideoPart`,
        :class:`DocumentPart`)."""
        if isinstance(content, str):
            parts: str | tuple[Part, ...] = content
        elif isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
            parts = tuple(part_from_input(p, f"content[{i}]") for i, p in enumerate(content))
        else:
            raise TypeError(f"content must be a str or a list of parts, not {type(content).__name__}")
        if not (parts.strip() if isinstance(parts, str) else parts):
            raise ValueError("a user message's content must not be empty")
        return cls(role="user", content=parts)

    @classmethod
    def tool_result(
        cls, tool_call_id: str, content: Any, *, name: str | None = None, is_error: bool = False
    ) -> Message:
        text = content if isinstance(content, str) else json.dumps(content)
        return cls(role="tool", content=text, tool_call_id=tool_call_id, name=name, is_error=is_error)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [
                {"type": "text", "text": p.text}
                if isinstance(p, TextPart)
                else {"type": p.type, "url": p.url, "media_type": p.media_type}
                if p.url
                else {"type": p.type, "media_type": p.media_type, "bytes": len(p.data or b"")}
                for p in self.content
            ]
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.is_error:
            out["is_error"] = True
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything in the message as JSON-ready data (image bytes and provider state included),
        so a conversation can be stored and continued later: :meth:`from_json` gives it back."""
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [_part_to_json(p) for p in self.content]
        if self.tool_calls:
            out["tool_calls"] = [_tool_call_to_json(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.provider_state is not None:
            out["provider_state"] = json_ready(self.provider_state)
        if self.cache is not None:
            out["cache"] = {"ttl": self.cache.ttl}
        if self.is_error:
            out["is_error"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """The message :meth:`to_json` wrote."""
        role = data["role"]
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
        raw = data.get("content", "")
        content: str | tuple[Part, ...] = raw if isinstance(raw, str) else tuple(_part_from_json(p) for p in raw)
        state = data.get("provider_state")
        cache = data.get("cache")
        return cls(
            role=role,
            content=content,
            tool_calls=tuple(tool_call_from_json(c) for c in data.get("tool_calls", ())),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            provider_state=None if state is None else from_json_ready(state),
            cache=None if cache is None else CachePoint(cache.get("ttl")),
            is_error=bool(data.get("is_error", False)),
        )


# -- JSON round trips (Message.to_json, fmclient.tool_loop.Run.to_json) ------------------------
_BYTES_KEY = "__fmclient_bytes__"


def json_ready(value: Any) -> Any:
    """``value`` with bytes tagged as base64 (provider state holds signatures as bytes), tuples as
    lists: what :func:`from_json_ready` turns back into the same data."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def from_json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        if len(value) == 1 and _BYTES_KEY in value:
            return base64.b64decode(value[_BYTES_KEY])
        return {k: from_json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_ready(v) for v in value]
    return value


def _part_to_json(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    out: dict[str, Any] = {"type": part.type, "media_type": part.media_type}
    if part.url is not None:
        out["url"] = part.url
    if part.data is not None:
        out["data"] = part.base64_data
    if isinstance(part, DocumentPart):
        out["name"] = part.name
        out["citations"] = part.citations
    return out


def _part_from_json(data: Mapping[str, Any]) -> Part:
    kind = data.get("type", "image")
    if kind == "text":
        return TextPart(data["text"])
    raw = data.get("data")
    payload = None if raw is None else base64.b64decode(raw)
    url, media_type = data.get("url"), data.get("media_type")
    if kind == "document":
        name, citations = data.get("name"), bool(data.get("citations", False))
        return DocumentPart(data=payload, url=url, media_type=media_type, name=name, citations=citations)
    media: dict[str, type[ImagePart | AudioPart | VideoPart]] = {
        "image": ImagePart,
        "audio": AudioPart,
        "video": VideoPart,
    }
    if kind not in media:
        raise ValueError(f"unknown part type {kind!r}")
    return media[kind](data=payload, url=url, media_type=media_type)


def _tool_call_to_json(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if call.raw_arguments is not None:
        out["raw_arguments"] = call.raw_arguments
    return out


def tool_call_from_json(data: Mapping[str, Any]) -> ToolCall:
    return ToolCall(
        id=data["id"], name=data["name"], arguments=dict(data["arguments"]), raw_arguments=data.get("raw_arguments")
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: a name, a description and JSON Schema parameters."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: a JSON Schema, and the Pydantic model it came from, if any."""

    name: str
    schema: Mapping[str, Any]
    model: Any = None  # a pydantic.BaseModel subclass, when the caller passed one


@dataclass(frozen=True, slots=True)
class Request:
    """A normalised chat request: what every adapter translates into its SDK's call.

    ``system`` holds every leading system message; ``messages`` never contain the system role.
    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or the name of one of ``tools``.
    ``timeout`` is the time this attempt may take (the client turns its deadline into it).
    """

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None
    response_format: ResponseFormat | None = None
    timeout: float | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    #: a prompt-cache breakpoint right after the system prompt (see :class:`CachePoint`)
    system_cache: CachePoint | None = None
    #: how hard the model should think: an effort ("none", "minimal", "low", "medium", "high",
    #: "xhigh", "max"; which ones depends on the model) or a token budget
    reasoning: str | int | None = None
    #: an audio answer: ``{"voice": ..., "format": ...}`` (OpenAI's audio models)
    audio: Mapping[str, Any] | None = None

    @property
    def cache_points(self) -> bool:
        """The request marks at least one prompt-cache breakpoint."""
        return self.system_cache is not None or any(m.cache is not None for m in self.messages)


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str
    texts: tuple[str, ...]
    timeout: float | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    #: image inputs, index-aligned with ``texts`` (whose entry is "" for an image); empty: text only
    images: tuple[ImagePart | None, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image-generation request, checked before it reaches an adapter."""

    model: str
    prompt: str
    size: str | None = None
    n: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    quality: str | None = None
    timeout: float | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """``size`` as ``(width, height)`` when it is ``"WxH"``; None for an aspect ratio or "auto"."""
        if self.size is None or "x" not in self.size:
            return None
        width, height = self.size.split("x", 1)
        return int(width), int(height)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; see the module docstring for the one definition every adapter follows."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    service_tier: str | None = None
    speed: str | None = None
    #: audio tokens among ``input_tokens`` / ``output_tokens``, where the provider reports them
    #: apart (priced apart: gpt-4o-transcribe's audio input, Gemini's audio in and out)
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    #: image tokens among ``output_tokens`` (Gemini's image models report them apart, and they
    #: are priced apart: many times a text token)
    output_image_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        # Counts add up; a tier or speed is kept only where both sides agree (a sum of calls
        # served differently has no one tier).
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.service_tier if self.service_tier == other.service_tier else None,
            self.speed if self.speed == other.speed else None,
            self.input_audio_tokens + other.input_audio_tokens,
            self.output_audio_tokens + other.output_audio_tokens,
            self.output_image_tokens + other.output_image_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "service_tier": self.service_tier,
            "speed": self.speed,
            "input_audio_tokens": self.input_audio_tokens,
            "output_audio_tokens": self.output_audio_tokens,
            "output_image_tokens": self.output_image_tokens,
        }


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of a call. Amounts are :class:`~decimal.Decimal` so that summing many small
    costs (a budget) is exact: ``0.1 + 0.2`` dollars is ``0.3``, and a spend equal to the budget
    compares equal to it."""

    total: Decimal
    input: Decimal
    output: Decimal
    currency: str = "USD"

    def __add__(self, other: Cost) -> Cost:
        if self.currency != other.currency:
            raise ValueError(f"cannot add {self.currency} and {other.currency}")
        return Cost(self.total + other.total, self.input + other.input, self.output + other.output, self.currency)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as floats (exact values stay on the object)."""
        return {
            "total": float(self.total),
            "input": float(self.input),
            "output": float(self.output),
            "currency": self.currency,
        }


@dataclass(slots=True)
class Completion:
    """A model's answer, the same shape whatever provider produced it."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str
    provider: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    message: Message = field(default_factory=lambda: Message(role="assistant"))
    parsed: Any = None
    raw: Any = field(default=None, repr=False)
    # One record per model tried when fallbacks were involved (see fmclient.fallback).
    attempts: list[Any] = field(default_factory=list, repr=False)
    # The provider's id for this answer (body ``id``) and for the HTTP request (``x-request-id``,
    # ``request-id``, ``x-amzn-RequestId``), where it sends them: for support tickets and logs.
    response_id: str | None = field(default=None, repr=False)
    request_id: str | None = field(default=None, repr=False)
    #: True when the answer came from the response cache (fmclient.cache): its cost is zero and
    #: its usage is the original call's, for information.
    cached: bool = False
    # The provider's rate-limit response headers, when the adapter sees them (fmclient.limits).
    rate_limit_headers: dict[str, str] | None = field(default=None, repr=False)
    #: the model's thinking text (or the provider's summary of it), where the provider returns it
    reasoning: str | None = None
    #: the passages of the request's documents the answer cites (Anthropic, Bedrock, OpenAI)
    citations: list[Citation] = field(default_factory=list)
    #: the spoken answer of a call made with ``audio=`` (its transcript is also ``text``)
    audio: AudioAnswer | None = None
    # Set by the engine: how to price this result (fmclient.pricing.priced, bound to where to look
    # the price up, which model ids and when the call was made). Run on first read of ``cost``.
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    _priced: tuple[Cost | None, str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> Cost | None:
        """What the call cost (``fmclient[cost]``), or None when unknown: see :attr:`cost_reason`."""
        return _price(self)[0]

    @property
    def cost_reason(self) -> str | None:
        """Why :attr:`cost` is None (extra not installed, model not in the price table...)."""
        return _price(self)[1]

    def to_dict(self) -> dict[str, Any]:
        parsed = self.parsed
        if parsed is not None and hasattr(parsed, "model_dump"):
            parsed = parsed.model_dump(mode="json")
        cost = self.cost
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "cost": None if cost is None else cost.to_dict(),
            "cost_reason": self.cost_reason,
            "model": self.model,
            "provider": self.provider,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls],
            "message": self.message.to_dict(),
            "parsed": parsed,
            "cached": self.cached,
            "reasoning": self.reasoning,
            "citations": [c.to_dict() for c in self.citations],
        }


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call. ``index`` identifies the call across deltas; ``id`` and
    ``name`` arrive once, ``arguments`` is a JSON fragment to concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed event. ``text`` is the delta of the answer (possibly empty) and ``reasoning``
    that of the model's thinking (or its summary), never mixed. The last chunk of a stream
    carries ``finish_reason`` and ``usage``; ``provider_state`` (if any) is attached to the
    assembled message."""

    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str | None = None
    provider_state: Mapping[str, Any] | None = None
    #: citations that arrived with this chunk (joined, they are the answer's
    #: :attr:`Completion.citations`)
    citations: tuple[Citation, ...] = ()
    raw: Any = field(default=None, repr=False, compare=False)
    #: On the first chunk of an OpenAI or Anthropic stream: the response's rate-limit headers,
    #: which the client's rate limits read (as ``Completion.rate_limit_headers``).
    rate_limit_headers: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    #: a streamed audio answer's next piece (``stream(..., audio={...})``), of ``audio_mime_type``
    #: (raw PCM from Gemini: ``audio/L16;codec=pcm;rate=24000``); joined, the pieces are the
    #: answer's audio, which the stream's ``completion.audio`` gives as complete() does (a WAV)
    audio: bytes = field(default=b"", repr=False)
    audio_mime_type: str | None = None
    #: the spoken answer's id and expiry where the provider gives them (OpenAI: on one chunk each);
    #: the stream's ``completion.audio`` carries them, and ``reply.message`` sends the id back
    audio_id: str | None = None
    audio_expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A prompt's input tokens, counted before sending (``Client.count_tokens``).

    ``exact`` is True when the provider's count API or the model's own tokenizer counted them;
    False for an estimate. ``method`` says which was used (and why an estimate, if so).
    """

    input_tokens: int
    exact: bool
    method: str


@dataclass(slots=True)
class Embeddings:
    """Vectors in the same order as the input texts."""

    vectors: list[list[float]]
    usage: Usage
    model: str
    provider: str
    raw: Any = field(default=None, repr=False)
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    _priced: tuple[Cost | None, str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> Cost | None:
        """What the call cost, or None when unknown: see :attr:`cost_reason`."""
        return _price(self)[0]

    @property
    def cost_reason(self) -> str | None:
        return _price(self)[1]

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, index: int) -> list[float]:
        return self.vectors[index]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.vectors)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One generated image: its encoded bytes, their MIME type, and the prompt the provider
    actually used where it rewrote it (OpenAI's ``revised_prompt``)."""

    data: bytes = field(repr=False)
    mime_type: str
    revised_prompt: str | None = None

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as out:
            out.write(self.data)


@dataclass(slots=True)
class Images:
    """The images one :meth:`~fmclient.Client.generate_image` call made, in the provider's order.

    ``usage`` holds token counts where the provider reports them (OpenAI's GPT image models), else None.
    """

    images: list[GeneratedImage]
    model: str
    provider: str
    usage: Usage | None = None
    raw: Any = field(default=None, repr=False)
    attempts: list[Any] = field(default_factory=list, repr=False)
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    _priced: tuple[Cost | None, str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> Cost | None:
        """What the call cost, from its token usage (the GPT image models); None when unknown, see
        :attr:`cost_reason` (per-image prices are not in the price table)."""
        return _price(self)[0]

    @property
    def cost_reason(self) -> str | None:
        return _price(self)[1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> GeneratedImage:
        return self.images[index]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.images)


def _price(result: Completion | Embeddings | Images | Transcription | Speech) -> tuple[Cost | None, str | None]:
    """Price a result once, on first read (cost, reason); later reads return the same answer."""
    priced = result._priced
    if priced is None:
        if result._pricer is None:
            # Not remembered: a hook may read the cost of an attempt's answer before the engine
            # has told the result how to price itself (fmclient._engine.Engine.priced).
            return None, "cost unknown: only results returned by a Client are priced"
        priced = result._priced = result._pricer()
    return priced


# -- transcription and speech ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """One transcription request, checked before it reaches an adapter: the audio's bytes, their
    MIME type (sniffed or given) and a file name with the matching extension (multipart uploads
    need one)."""

    model: str
    audio: bytes = field(repr=False)
    mime_type: str
    filename: str
    language: str | None = None
    prompt: str | None = None
    timeout: float | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """One text-to-speech request. ``format`` None: the model's own default (see docs/speech.md)."""

    model: str
    text: str
    voice: str
    format: str | None = None
    instructions: str | None = None
    timeout: float | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """A timed piece of a transcript: seconds from the start of the audio."""

    start: float
    end: float
    text: str


@dataclass(slots=True)
class Transcription:
    """What :meth:`~fmclient.Client.transcribe` heard. ``language``, ``duration`` (seconds) and
    ``segments`` are filled where the provider gives them (whisper-1), else None / empty;
    ``usage`` holds the tokens where the model is billed by token."""

    text: str
    model: str
    provider: str
    language: str | None = None
    duration: float | None = None
    segments: list[TranscriptSegment] = field(default_factory=list)
    usage: Usage | None = None
    raw: Any = field(default=None, repr=False)
    attempts: list[Any] = field(default_factory=list, repr=False)
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    _priced: tuple[Cost | None, str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> Cost | None:
        """What the call cost (per token, or per second of audio for whisper-1), or None when
        unknown: see :attr:`cost_reason`."""
        return _price(self)[0]

    @property
    def cost_reason(self) -> str | None:
        return _price(self)[1]


@dataclass(slots=True)
class Speech:
    """The audio :meth:`~fmclient.Client.speak` made: encoded bytes and their MIME type (Gemini's
    raw PCM comes wrapped as a WAV file). ``characters`` is the length of the text spoken (what
    tts-1 is billed on); ``usage`` holds tokens where the provider reports them (Gemini)."""

    data: bytes = field(repr=False)
    mime_type: str
    model: str
    provider: str
    characters: int = 0
    usage: Usage | None = None
    raw: Any = field(default=None, repr=False)
    attempts: list[Any] = field(default_factory=list, repr=False)
    _pricer: Pricer | None = field(default=None, repr=False, compare=False)
    _priced: tuple[Cost | None, str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> Cost | None:
        """What the call cost, or None when unknown: see :attr:`cost_reason`."""
        return _price(self)[0]

    @property
    def cost_reason(self) -> str | None:
        return _price(self)[1]

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as out:
            out.write(self.data)


@dataclass(frozen=True, slots=True)
class AudioAnswer:
    """A model's spoken answer (``complete(..., audio={...})``): the audio file's bytes, their MIME
    type, what was said, and the provider's id for it (sent back with ``reply.message`` on the next
    turn; OpenAI keeps the audio until ``expires_at``, epoch seconds)."""

    data: bytes = field(repr=False)
    mime_type: str
    transcript: str
    id: str | None = None
    expires_at: int | None = None
