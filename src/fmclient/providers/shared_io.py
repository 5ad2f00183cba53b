"""What every adapter's I/O paths share, written once: error mapping, stream closing, tool calls.

Each adapter has four I/O paths (``complete``/``acomplete``/``stream``/``astream``) around its
SDK. What differs between adapters is data and pure functions: the SDK's exception -> fmclient
error table, and how one event becomes chunks. What is the same lives here:

* :class:`MappedErrors`: a ``with`` block that turns any exception into the adapter's fmclient
  error (the SDK's chained as ``__cause__``), fills in provider and model, attaches the text a
  stream had delivered, and honours the ``x-should-retry`` response header.
* :func:`stream_chunks` / :func:`astream_chunks`: open the SDK stream, feed its events through
  the adapter's parser, and close the SDK stream on the normal end, on an error and when the
  consumer stops early. The sync one is a plain generator: no event loop per sync call.
* :func:`tool_arguments` / :class:`ToolCallAssembler`: tool-call arguments from JSON text,
  whole or assembled from streamed fragments, with one rule for a reply cut off by
  ``max_tokens`` in the middle of them: it is returned (``finish_reason="length"``, the text in
  ``ToolCall.raw_arguments``), never raised and so never re-sent.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal, TypeVar

from fmclient.errors import BadRequestError, FMClientError, StructuredOutputError, UnsupportedFeatureError
from fmclient.types import MEDIA_PARTS, Chunk, Citation, DocumentPart, MediaPart, Message, ToolCall, ToolCallDelta

__all__ = [
    "THINKING_BUDGETS",
    "ErrorTable",
    "MappedErrors",
    "ToolCallAssembler",
    "aclose_quietly",
    "astream_chunks",
    "claude_reasoning",
    "claude_thinking",
    "close_quietly",
    "map_exception",
    "merge_provider_options",
    "rate_limit_headers",
    "should_retry_header",
    "stream_chunks",
    "thinking_budget",
    "tool_arguments",
]

E = TypeVar("E")

#: An adapter's pure exception -> fmclient error table.
ErrorTable = Callable[[BaseException], FMClientError]
#: What an adapter's parser makes of one SDK event: nothing, a chunk, or several.
Fed = Chunk | Sequence[Chunk] | None


# -- errors ------------------------------------------------------------------------------------
def should_retry_header(exc: BaseException) -> bool | None:
    """The provider's own ``x-should-retry: true|false`` verdict on a failed response, if it sent one.

    OpenAI and Anthropic send it; their SDKs follow it over the status code, and so does fmclient
    (its retry layer is the only one). httpx responses carry ``.headers``; botocore errors a dict.
    """
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None)
    if headers is None and isinstance(response, Mapping):
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders")
    if headers is None:
        return None
    try:
        value = headers.get("x-should-retry")
    except AttributeError:
        return None
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def map_exception(
    exc: BaseException, table: ErrorTable, *, provider: str, model: str | None, partial_text: str | None = None
) -> FMClientError:
    """The fmclient error for ``exc``: through ``table`` unless it is one already."""
    error = exc if isinstance(exc, FMClientError) else table(exc)
    if error.provider is None:
        error.provider = provider
    if error.model is None:
        error.model = model
    if partial_text and error.partial_text is None:
        error.partial_text = partial_text
    verdict = should_retry_header(exc)
    if verdict is not None:
        error.retryable = verdict
    return error


class MappedErrors:
    """``with MappedErrors(table, ...):`` around an SDK call: what escapes is an fmclient error.

    Works in sync and async code alike (``await`` inside a plain ``with``). Only ``Exception`` is
    mapped: cancellation, ``KeyboardInterrupt`` and a generator being closed pass through as they
    are. ``partial_text`` is asked for the text a stream had delivered when it failed.
    """

    __slots__ = ("_model", "_partial_text", "_provider", "_table")

    def __init__(
        self,
        table: ErrorTable,
        *,
        provider: str,
        model: str | None,
        partial_text: Callable[[], str] | None = None,
    ) -> None:
        self._table = table
        self._provider = provider
        self._model = model
        self._partial_text = partial_text

    def __enter__(self) -> MappedErrors:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Returns None (never True): an exception is never swallowed, only replaced.
        if exc is None or not isinstance(exc, Exception):
            return
        partial = self._partial_text() if self._partial_text is not None else None
        error = map_exception(exc, self._table, provider=self._provider, model=self._model, partial_text=partial)
        if error is exc:
            return  # already an fmclient error (now filled in): let it continue as it is
        raise error from exc


# -- streams -----------------------------------------------------------------------------------
def close_quietly(events: Any) -> None:
    """Close an SDK stream. A failure to close is dropped: the answer is complete, or another
    error is already on its way, and the connection is being let go either way."""
    close = getattr(events, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        pass


async def aclose_quietly(events: Any) -> None:
    """The async twin of :func:`close_quietly` (``aclose()``, or an async or sync ``close()``)."""
    close = getattr(events, "aclose", None) or getattr(events, "close", None)
    if close is None:
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception:
        pass


def _chunks_of(fed: Fed) -> Sequence[Chunk]:
    if fed is None:
        return ()
    if isinstance(fed, Chunk):
        return (fed,)
    return fed


def stream_chunks(
    open_events: Callable[[], Iterable[E]],
    feed: Callable[[E], Fed],
    end: Callable[[], Chunk | None],
    errors: MappedErrors,
    *,
    done: Callable[[], bool] | None = None,
) -> Iterator[Chunk]:
    """The chunks of one SDK stream: ``open_events`` sends the request, ``feed`` parses an event,
    ``end`` makes the final chunk (or raises when the stream was cut short), ``done`` says the
    last event has come. The SDK stream is closed before the final chunk is handed over."""
    events: Iterable[E] | None = None
    with errors:
        try:
            events = open_events()
            stamp = _FirstChunkStamp(events)
            for event in events:
                for chunk in _chunks_of(feed(event)):
                    yield stamp(chunk)
                if done is not None and done():
                    break
            final = end()
        finally:
            if events is not None:
                close_quietly(events)
    if final is not None:
        yield stamp(final)


async def astream_chunks(
    open_events: Callable[[], Awaitable[AsyncIterable[E]]],
    feed: Callable[[E], Fed],
    end: Callable[[], Chunk | None],
    errors: MappedErrors,
    *,
    done: Callable[[], bool] | None = None,
) -> AsyncIterator[Chunk]:
    """The async twin of :func:`stream_chunks`."""
    events: AsyncIterable[E] | None = None
    with errors:
        try:
            events = await open_events()
            stamp = _FirstChunkStamp(events)
            async for event in events:
                for chunk in _chunks_of(feed(event)):
                    yield stamp(chunk)
                if done is not None and done():
                    break
            final = end()
        finally:
            if events is not None:
                await aclose_quietly(events)
    if final is not None:
        yield stamp(final)


# -- images --------------------------------------------------------------------------------------
def check_image_url(
    part: MediaPart, takes: tuple[str, ...], *, host: str, provider: str | None = None, model: str | None = None
) -> None:
    """Refuse, before sending, a media URL whose scheme this host does not fetch (a ``gs://`` or
    ``s3://`` URI is passed only to the hosts that read that storage)."""
    if part.url is not None and not part.url.startswith(takes):
        scheme = part.url.split(":", 1)[0]
        raise UnsupportedFeatureError(
            f"{host} does not fetch {scheme}:// {part.type} URLs (it takes {', '.join(takes)}): pass the "
            f"{part.type} bytes",
            provider=provider,
            model=model,
        )


def media_in(message: Message) -> str | None:
    """The kind of the first media part of ``message`` ("image", "audio", "video", "document"), or None."""
    if isinstance(message.content, str):
        return None
    return next((part.type for part in message.content if isinstance(part, MEDIA_PARTS)), None)


def refuse_media(message: Message, where: str, *, host: str, model: str | None, provider: str | None = None) -> None:
    """Refuse media in a message this host takes as text only (a tool result, an assistant turn):
    sending its text alone would drop the media without a word."""
    kind = media_in(message)
    if kind is not None:
        plural = {"image": "images", "audio": "audio", "video": "video", "document": "documents"}[kind]
        raise UnsupportedFeatureError(f"{host} does not accept {plural} in {where}", provider=provider, model=model)


def inline_only(part: MediaPart, *, host: str, provider: str | None, model: str | None) -> bytes:
    """The bytes of a part this host takes inline only; a URL is refused before sending."""
    if part.data is None:
        raise UnsupportedFeatureError(
            f"{host} takes {part.type} inline only, not from a URL ({part.url}): pass the bytes",
            provider=provider,
            model=model,
        )
    return part.data


# OpenAI's input_file tells a document's type by its file name's extension ([openai-file-inputs]
# in profiles/families.toml): every type a profile lists has its extension here.
_EXTENSIONS = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "text/markdown": "md",
    "text/html": "html",
    "text/xml": "xml",
    "application/xml": "xml",
    "application/json": "json",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/rtf": "rtf",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


def document_filename(part: DocumentPart, index: int | None = None) -> str:
    """The name a document goes by where the API wants one: its own, else ``document[-n].<ext>``."""
    if part.name:
        return part.name
    stem = "document" if index is None else f"document-{index}"
    ext = _EXTENSIONS.get(part.media_type or "")
    return f"{stem}.{ext}" if ext else stem


# -- citations ---------------------------------------------------------------------------------
def citation(
    cited_text: Any,
    *,
    document_index: Any = None,
    document_name: Any = None,
    location: Literal["page", "char", "chunk"] | None = None,
    start: Any = None,
    end: Any = None,
    answer: tuple[int, int] | None = None,
) -> Citation:
    """One normalised :class:`~fmclient.types.Citation` from a provider's fields (ints kept only
    where they are ints: a provider's odd value is dropped, not guessed)."""

    def whole(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Citation(
        cited_text=cited_text if isinstance(cited_text, str) else "",
        document_index=whole(document_index),
        document_name=document_name if isinstance(document_name, str) and document_name else None,
        location=location,
        start=whole(start),
        end=whole(end),
        answer_start=None if answer is None else answer[0],
        answer_end=None if answer is None else answer[1],
    )


# -- tool calls --------------------------------------------------------------------------------
def tool_arguments(
    raw: str | None, *, truncated: bool, name: str, call_id: str, provider: str | None, model: str | None
) -> tuple[dict[str, Any], str | None]:
    """A tool call's arguments from its JSON text: ``(arguments, raw_arguments)``.

    ``raw_arguments`` is ``None`` when the text is a JSON object. A reply cut off by
    ``max_tokens`` (``truncated``) may end inside the arguments: the text is then returned as
    ``raw_arguments`` with ``{}`` as arguments, and nothing is raised, so nothing is re-sent and
    billed again. Any other text that is not a JSON object is :class:`StructuredOutputError`
    (not retryable: the model did answer, with something unusable).
    """
    if raw is None or not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested deeper than the stack
        if truncated:
            return {}, raw
        raise StructuredOutputError(
            f"arguments of tool call {name!r} ({call_id}) are not valid JSON: {exc}",
            text=raw,
            provider=provider,
            model=model,
        ) from exc
    if not isinstance(value, dict):
        if truncated:
            return {}, raw
        raise StructuredOutputError(
            f"arguments of tool call {name!r} ({call_id}) are not a JSON object",
            text=raw,
            provider=provider,
            model=model,
        )
    return value, None


class ToolCallAssembler:
    """Tool calls put together from streamed :class:`ToolCallDelta` pieces.

    ``index`` identifies a call across deltas; its id and name arrive once, its arguments as
    JSON fragments to concatenate.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str | None], list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, delta: ToolCallDelta) -> None:
        ident, fragments = self._calls.setdefault(delta.index, ([None, None], []))
        if delta.id:
            ident[0] = delta.id
        if delta.name:
            ident[1] = delta.name
        if delta.arguments:
            fragments.append(delta.arguments)

    def calls(self, *, truncated: bool, provider: str | None, model: str | None) -> list[ToolCall]:
        out: list[ToolCall] = []
        for index in sorted(self._calls):
            (call_id, name), fragments = self._calls[index]
            call_id = call_id or f"call_{index}"
            arguments, raw = tool_arguments(
                "".join(fragments),
                truncated=truncated,
                name=name or "",
                call_id=call_id,
                provider=provider,
                model=model,
            )
            out.append(ToolCall(id=call_id, name=name or "", arguments=arguments, raw_arguments=raw))
        return out


# -- reasoning= ---------------------------------------------------------------------------------
#: The token budget an effort stands for where a provider takes a budget (Claude extended
#: thinking, Gemini 2.5). Anthropic's minimum is 1024; 24576 is the largest budget every
#: Gemini 2.5 model accepts.
THINKING_BUDGETS: Mapping[str, int] = {"low": 1024, "medium": 8192, "high": 24576}
#: Anthropic refuses a smaller ``budget_tokens``.
CLAUDE_MIN_BUDGET = 1024
#: Adaptive-thinking efforts at which Anthropic asks for a large ``max_tokens`` (its effort
#: documentation: at xhigh and max effort set a large output limit, starting at 64k tokens, so
#: the model has room to think and answer), and the limit sent there when the caller set none.
CLAUDE_LARGE_OUTPUT_EFFORTS = frozenset({"xhigh", "max"})
CLAUDE_LARGE_OUTPUT_MAX_TOKENS = 64000


def thinking_budget(reasoning: str | int, *, provider: str, model: str) -> int:
    """``reasoning=`` as a token budget: an effort through :data:`THINKING_BUDGETS`. An effort
    with no budget there ("none", "minimal", "xhigh", "max") is refused rather than sent as a
    neighbouring one: a model that takes only a budget has no such level."""
    if not isinstance(reasoning, str):
        return reasoning
    if reasoning not in THINKING_BUDGETS:
        efforts = ", ".join(map(repr, THINKING_BUDGETS))
        raise UnsupportedFeatureError(
            f"reasoning={reasoning!r}: this model takes a thinking token budget, and fmclient maps only the "
            f"efforts {efforts} to one; pass a budget (an int) instead",
            provider=provider,
            model=model,
        )
    return THINKING_BUDGETS[reasoning]


def claude_reasoning(
    reasoning: str | int,
    max_tokens: int | None,
    default_max_tokens: int,
    *,
    adaptive: bool,
    provider: str,
    model: str,
    output_limit: int | None = None,
) -> tuple[dict[str, Any], int | None]:
    """Claude's request fields for ``reasoning=`` (the same on the Anthropic API and, in
    ``additionalModelRequestFields``, on Bedrock) and the ``max_tokens`` to send.

    A family with adaptive thinking (its profile's ``adaptive_thinking``) takes an effort as
    ``thinking: {"type": "adaptive"}`` with ``output_config.effort``, and ``max_tokens`` is left
    as it was, except that at the efforts Anthropic asks a large output limit for
    (:data:`CLAUDE_LARGE_OUTPUT_EFFORTS`) an unset one is :data:`CLAUDE_LARGE_OUTPUT_MAX_TOKENS`
    (at most ``output_limit``, the model's maximum output); a ``max_tokens`` the caller set is
    always sent as set. A token budget, and every effort on older Claude models, is extended
    thinking with ``budget_tokens`` (see :func:`claude_thinking`).
    """
    if adaptive and isinstance(reasoning, str):
        if max_tokens is None and reasoning in CLAUDE_LARGE_OUTPUT_EFFORTS:
            max_tokens = CLAUDE_LARGE_OUTPUT_MAX_TOKENS
            if output_limit is not None:
                max_tokens = min(max_tokens, output_limit)
        return {"thinking": {"type": "adaptive"}, "output_config": {"effort": reasoning}}, max_tokens
    thinking, max_tokens = claude_thinking(reasoning, max_tokens, default_max_tokens, provider=provider, model=model)
    return {"thinking": thinking}, max_tokens


def claude_thinking(
    reasoning: str | int, max_tokens: int | None, default_max_tokens: int, *, provider: str, model: str
) -> tuple[dict[str, Any], int]:
    """Claude's extended thinking for ``reasoning=``: the ``thinking`` object and the
    ``max_tokens`` to send, which must exceed the budget (without one set, the answer gets
    ``default_max_tokens`` on top of the budget)."""
    budget = thinking_budget(reasoning, provider=provider, model=model)
    if budget < CLAUDE_MIN_BUDGET:
        raise BadRequestError(
            f"reasoning={reasoning!r}: Claude's thinking budget is at least {CLAUDE_MIN_BUDGET} tokens",
            provider=provider,
            model=model,
        )
    if max_tokens is None:
        max_tokens = budget + default_max_tokens
    elif max_tokens <= budget:
        raise BadRequestError(
            f"max_tokens={max_tokens} must exceed the thinking budget ({budget} tokens for reasoning={reasoning!r})",
            provider=provider,
            model=model,
        )
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


# -- provider options into a request ---------------------------------------------------------
def merge_provider_options(
    params: dict[str, Any],
    options: Mapping[str, Any],
    *,
    provider: str,
    model: str,
    defaults: Iterable[str] = (),
) -> dict[str, Any]:
    """Merge ``provider_options`` into the request ``params`` an adapter built from the call's
    arguments, one level deep, and return ``params``.

    A key fmclient did not set is added. Where both sides are dicts (``text``, ``reasoning``,
    ``output_config``, ``additionalModelRequestFields``, ``options``...) the option's keys join
    fmclient's: ``text={"verbosity": "low"}`` keeps the ``text.format`` a ``response_format`` made.
    A value fmclient set from an argument may be repeated but not changed: two answers to one
    question (``reasoning="high"`` and ``reasoning={"effort": "low"}``) raise
    :class:`~fmclient.errors.BadRequestError` naming both, rather than one silently winning.
    ``defaults`` names the paths (``"store"``, ``"reasoning.summary"``) where fmclient only
    chose a default, which an option replaces; a whole key there takes the option's value.
    """
    default_paths = frozenset(defaults)
    for key, value in options.items():
        current = params.get(key)
        if key not in params:
            params[key] = value
        elif isinstance(current, Mapping) and isinstance(value, Mapping):
            merged = dict(current)
            for inner, inner_value in value.items():
                path = f"{key}.{inner}"
                if (
                    inner in merged
                    and key not in default_paths
                    and path not in default_paths
                    and merged[inner] != inner_value
                ):
                    raise _option_conflict(path, inner_value, merged[inner], provider=provider, model=model)
                merged[inner] = inner_value
            params[key] = merged
        elif key in default_paths or current == value:
            params[key] = value
        else:
            raise _option_conflict(key, value, current, provider=provider, model=model)
    return params


def _option_conflict(path: str, value: Any, current: Any, *, provider: str, model: str) -> BadRequestError:
    return BadRequestError(
        f"provider option {path}={_shown(path, value)} conflicts with {_shown(path, current)}, which fmclient "
        "sends for the call's own arguments (reasoning=, response_format=, max_tokens=, tools=...): set it in "
        "one place",
        provider=provider,
        model=model,
    )


def _shown(path: str, value: Any) -> str:
    """A value for an error message: headers may carry credentials and are never shown; long
    values (a schema, a prompt) are cut."""
    if "header" in path.lower():
        return "<hidden>"
    shown = repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


# -- response headers ------------------------------------------------------------------------
#: The headers in which OpenAI and Anthropic say how much of a rate limit is left (fmclient.limits
#: reads them from ``Completion.rate_limit_headers`` to slow down before a 429).
RATE_LIMIT_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_RATE_LIMIT_PREFIXES_BYTES = tuple(prefix.encode() for prefix in RATE_LIMIT_HEADER_PREFIXES)


def rate_limit_headers(headers: Any) -> dict[str, str] | None:
    """The rate-limit headers of a raw HTTP response, for ``Completion.rate_limit_headers``."""
    if headers is None:
        return None
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        # httpx's headers as received: matching the bytes skips decoding every header of every
        # response (this runs once per call, on the hot path).
        found = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in raw
            if key.lower().startswith(_RATE_LIMIT_PREFIXES_BYTES)
        }
    else:
        found = {
            str(k).lower(): str(v) for k, v in headers.items() if str(k).lower().startswith(RATE_LIMIT_HEADER_PREFIXES)
        }
    return found or None


class _FirstChunkStamp:
    """Puts the rate-limit headers of the response an SDK stream reads (the OpenAI and Anthropic
    SDKs' ``Stream.response``) on the first chunk of the stream, for the client's rate limits.
    Streams with no such response (Gemini, Ollama, Bedrock) pass through unchanged."""

    __slots__ = ("headers",)

    def __init__(self, events: object) -> None:
        self.headers = rate_limit_headers(getattr(getattr(events, "response", None), "headers", None))

    def __call__(self, chunk: Chunk) -> Chunk:
        if self.headers is None:
            return chunk
        chunk, self.headers = replace(chunk, rate_limit_headers=self.headers), None
        return chunk
