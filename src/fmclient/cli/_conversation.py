"""One conversation as the command line holds it: the turns so far, sent again with each prompt,
and every turn logged (``complete`` and ``chat`` share this)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.errors import FMClientError
from fmclient.logstore import (
    Attachment,
    LogRecord,
    LogStore,
    LogStoreError,
    default_log_path,
    keep_pending,
    logging_enabled,
)

if TYPE_CHECKING:
    from fmclient._media import MediaKind
    from fmclient.cli._tools import Toolset
    from fmclient.client import Client
    from fmclient.tool_loop import Run
    from fmclient.types import Completion, MediaPart, Message


def new_conversation_id() -> str:
    # Time first, so ids sort by creation; 6 random bytes so two processes never collide.
    return f"{time.time_ns() // 1_000_000:x}{os.urandom(6).hex()}"


def open_log() -> LogStore | None:
    """The user's log, or None when logging is off. Raises LogStoreError if it cannot be opened."""
    return LogStore() if logging_enabled() else None


@dataclass
class Attached:
    """A file given with ``-a`` (or bytes on stdin, ``-a -``): the part sent and what the log
    remembers of it (its hash, type, size and path: never its bytes)."""

    part: MediaPart
    record: Attachment

    @classmethod
    def load(cls, path: str, media_type: str | None = None) -> Attached:
        """The file at ``path`` as the part of its kind. The kind comes from the bytes (a file's
        extension only tells apart what the bytes leave open: an MP4 or WebM of audio or video,
        text formats); ``media_type`` (``--attach-type``) is checked against them. A missing,
        empty or unknown file raises ValueError with the reason, before any call."""
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"attachment file not found: {path}")
        data = file.read_bytes()
        part = media_part(data, media_type, file.name, f"attachment {path}")
        return cls(part, Attachment.of(data, part.media_type, str(file.resolve())))

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str, what: str = "attachment on stdin") -> Attached:
        """Bytes read from stdin (``-a -``), of the type ``--attach-type`` declared."""
        part = media_part(data, media_type, None, what)
        return cls(part, Attachment.of(data, part.media_type))


def media_kind(data: bytes, media_type: str | None, filename: str | None, what: str) -> MediaKind:
    """Which kind of part ``data`` is: the declared type's, else the one its bytes say."""
    from fmclient import _media

    if not data:
        raise ValueError(f"{what} is empty")
    if media_type:
        declared = _media.canonical_mime(media_type)
        for kind, prefixes in (("image", ("image/",)), ("audio", ("audio/",)), ("video", ("video/",))):
            if declared.startswith(prefixes):
                return kind  # type: ignore[return-value]
        if declared.startswith(("application/", "text/")):
            return "document"
        raise ValueError(f"{what}: {media_type!r} is not an image, audio, video or document type")
    sniffed = _media.sniff(data, "document", filename)
    if sniffed is None:
        raise ValueError(
            f"{what}: its type could not be told from its bytes (not an image, audio, video or document "
            "fmclient knows); say what it is with --attach-type MIME"
        )
    if sniffed.startswith("image/"):
        return "image"
    if sniffed.startswith(("application/", "text/")):
        return "document"
    # A container (MP4, WebM, Ogg) holds audio or video: its bytes name the container, so a file
    # name's extension decides between the two when it names one of them; else the container's usual.
    as_audio, as_video = _media.sniff(data, "audio", filename), _media.sniff(data, "video", filename)
    if as_audio == as_video:
        return "audio" if sniffed.startswith("audio/") else "video"
    by_name = _media._by_extension(filename)
    if by_name is not None and by_name.startswith("audio/"):
        return "audio"
    if by_name is not None and by_name.startswith("video/"):
        return "video"
    return "audio" if as_audio == "audio/ogg" else "video"


def media_part(data: bytes, media_type: str | None, filename: str | None, what: str) -> MediaPart:
    """``data`` as the part of its kind, its type checked against the bytes (see :func:`media_kind`)."""
    from fmclient import _media
    from fmclient.types import AudioPart, DocumentPart, ImagePart, VideoPart

    kind = media_kind(data, media_type, filename, what)
    resolved = _media.resolve_type(data, kind, media_type, filename, what)
    if kind == "document":
        return DocumentPart(data=data, media_type=resolved, name=filename)
    part_class: type[ImagePart | AudioPart | VideoPart] = {"image": ImagePart, "audio": AudioPart, "video": VideoPart}[
        kind
    ]
    return part_class(data=data, media_type=resolved)


@dataclass
class Conversation:
    """The turns of one conversation, its id, model and system prompt."""

    id: str
    model: str | None = None
    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    #: True once a turn could not be logged (kept in the pending file instead): exit non-zero
    log_failed: bool = False
    #: the last turn's tool loop, when it had tools
    last_run: Run | None = None

    @classmethod
    def resume(cls, store: LogStore, conversation_id: str) -> Conversation:
        """The conversation as logged: its turns (attachments read again from their paths), the
        last model and system prompt."""
        from fmclient.types import Message

        if not store.conversation_exists(conversation_id):
            raise ValueError(f"no conversation {conversation_id!r} in the log ({store.path})")
        rows = store.responses(limit=None, conversation_id=conversation_id)
        messages: list[Message] = []
        for row in rows:
            if row.get("operation", "chat") != "chat":
                continue
            if (row["error"] and row["error"] != "interrupted") or not (row["answer"] or row.get("messages")):
                continue  # failed, or stopped before any text: not part of the conversation
            parts: list[Any] = [row["prompt"]] if row["prompt"] else []
            parts += [_reload(a) for a in row["attachments"]]
            messages.append(Message.user(parts[0] if len(parts) == 1 and isinstance(parts[0], str) else parts))
            if row.get("messages"):  # the reply as sent back: opaque state and tool steps included
                messages += [Message.from_json(m) for m in row["messages"]]
            else:  # logged before replies were kept whole, or stopped part-way: the text
                messages.append(Message(role="assistant", content=row["answer"]))
        last = rows[-1] if rows else None
        model = f"{last['provider']}/{last['model']}" if last else None
        return cls(conversation_id, model, last["system"] if last else None, messages)

    def ask(
        self,
        client: Client,
        prompt: str,
        *,
        store: LogStore | None,
        attachments: Sequence[Attached] = (),
        params: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        stream: bool = True,
        write: Callable[[str], None] | None = None,
        source: str = "cli",
        tools: Toolset | None = None,
    ) -> Completion | None:
        """Send ``prompt`` after the turns so far; stream its text to ``write``. Returns the
        Completion, or None when the person pressed Ctrl-C (what arrived is kept and logged).

        With ``tools`` the turn is a tool loop (``client.run_stream``): each call and result is
        shown on stderr as it runs, and the log records every step's calls and results."""
        from fmclient.types import Message

        params = {k: v for k, v in (params or {}).items() if v is not None}
        options = dict(options or {})
        user = Message.user([prompt, *(a.part for a in attachments)] if attachments else prompt)
        sent = [*self.messages, user]
        started = time.perf_counter()
        completion: Completion | None = None
        partial = ""
        interrupted: KeyboardInterrupt | None = None
        failed: FMClientError | None = None
        run: Run | None = None
        self.last_run = None
        try:
            if tools is not None:
                completion, run, partial, interrupted, failed = self._run(
                    client, sent, tools, {**params, **options}, write
                )
            elif stream:
                with client.stream(sent, model=self.model, system=self.system, **params, **options) as answer:
                    try:
                        for chunk in answer:
                            if chunk.text and write is not None:
                                write(chunk.text)
                        completion = answer.completion
                    except KeyboardInterrupt as stop:
                        interrupted, partial = stop, answer.text
                    except FMClientError as error:
                        failed, partial = error, answer.text
            else:
                completion = client.complete(sent, model=self.model, system=self.system, **params, **options)
                if write is not None:
                    write(completion.text)
        except FMClientError as error:
            failed = error
        duration = time.perf_counter() - started
        if failed is None and run is not None and completion is not None:
            self.messages = list(run.messages)  # every step's answer and tool results, in order
        elif failed is None and run is None and (completion is not None or partial):
            answered = completion.message if completion is not None else Message("assistant", partial)
            self.messages = [*sent, answered]
        # A turn that failed, or was stopped before any text, stays out of the conversation (so
        # does a tool loop stopped part-way: its history would end in an unanswered call); the
        # log keeps it with why.
        why = f"{type(failed).__name__}: {failed}" if failed else ("interrupted" if interrupted else None)
        target = client.settings.resolve(self.model or client.settings.default_model)
        record = LogRecord.from_completion(
            completion,
            prompt=prompt,
            model=target.model,
            provider=target.provider,
            system=self.system,
            conversation_id=self.id,
            options={**params, **options},
            duration=duration,
            attachments=[a.record for a in attachments],
            source=source,
            partial_answer=partial,
            error=why,
        )
        if run is not None:
            record.add_run(run)
        if failed is None and completion is not None:
            # What continuing sends again: the reply as the provider gave it, not its text alone.
            record.messages = [m.to_json() for m in self.messages[len(sent) :]]
        self.last_run = run
        self.log(store, record)
        if failed is not None:
            raise failed
        return completion

    def _run(
        self,
        client: Client,
        sent: list[Message],
        tools: Toolset,
        call_args: dict[str, Any],
        write: Callable[[str], None] | None,
    ) -> tuple[Completion | None, Run | None, str, KeyboardInterrupt | None, FMClientError | None]:
        """One turn as a tool loop: (completion, run, partial text, interrupted, failed)."""
        from fmclient.cli._tools import show_call, show_result
        from fmclient.tool_loop import TextDelta, ToolCallEvent, ToolResultEvent

        texts: list[str] = []
        answer = client.run_stream(sent, model=self.model, system=self.system, **tools.run_options(), **call_args)
        with answer:
            try:
                for event in answer:
                    if isinstance(event, TextDelta):
                        texts.append(event.text)
                        if write is not None:
                            write(event.text)
                    elif isinstance(event, ToolCallEvent):
                        if texts and write is not None:
                            write("\n")  # the step's text ends before its calls are shown
                        show_call(event.call)
                    elif isinstance(event, ToolResultEvent):
                        show_result(event.result)
            except KeyboardInterrupt as stop:
                return None, None, "".join(texts), stop, None
            except FMClientError as error:
                partial_run: Run | None = error.run
                steps = partial_run.steps if partial_run is not None else []
                return (steps[-1].completion if steps else None), partial_run, "".join(texts), None, error
        run = answer.run
        return run.completion, run, "", None, None

    def log(self, store: LogStore | None, record: LogRecord) -> None:
        if not write_log(record, store):
            self.log_failed = True


def log_call(
    client: Client,
    operation: str,
    model: str,
    call: Callable[[], Any],
    *,
    prompt: str,
    answer: Callable[[Any], str] = lambda result: "",
    attachments: Callable[[Any], Sequence[Attachment]] = lambda result: (),
    options: dict[str, Any] | None = None,
) -> tuple[Any, bool]:
    """Run ``call`` (one embed, image or batch call) and log it, failed or not: the operation,
    the model, usage and cost (never the embeddings or image bytes). Returns its result and
    whether the log was written; a failure is logged, then raised."""
    target = client.settings.resolve(model)  # an unknown model: an error, nothing logged
    started = time.perf_counter()
    result = failed = None
    try:
        result = call()
    except FMClientError as error:
        failed = error
    record = LogRecord.for_operation(
        operation,
        result,
        prompt=prompt,
        answer="" if result is None else answer(result),
        model=target.model,  # what was asked, as for a chat turn
        provider=target.provider,
        options=options,
        duration=time.perf_counter() - started,
        attachments=[] if result is None else list(attachments(result)),
        error=None if failed is None else f"{type(failed).__name__}: {failed}",
    )
    logged = write_log(record)
    if failed is not None:
        raise failed
    return result, logged


def write_log(record: LogRecord, store: LogStore | None = None) -> bool:
    """Log ``record`` (into ``store``, else the user's log, unless logging is off). False when the
    log could not be written: the record is then kept in the pending file, and stderr says so."""
    if store is None:
        if not logging_enabled():
            return True
        try:
            store = LogStore()
        except LogStoreError as error:
            _keep(record, error)
            return False
    try:
        store.log(record)
    except LogStoreError as error:
        _keep(record, error)
        return False
    return True


def _keep(record: LogRecord, error: LogStoreError) -> None:
    where = keep_pending(record, default_log_path())
    print(
        f"fmclient: LogStoreError: {error.message}; this exchange is kept in {where} "
        "and goes into the log with the next one that can be written",
        file=sys.stderr,
    )


def _reload(attachment: dict[str, Any]) -> MediaPart:
    """An earlier turn's attachment, read again from its path and checked against its hash."""
    path = attachment.get("path")
    if not path:
        raise ValueError(
            f"an earlier turn's attachment (sha256 {attachment['sha256'][:12]}, {attachment['media_type']}) came "
            "from stdin and is not kept: the conversation cannot be sent again without it"
        )
    if not Path(path).is_file():
        raise ValueError(
            f"an earlier turn's attachment {path} is gone: the conversation cannot be sent again without it"
        )
    data = Path(path).read_bytes()
    if Attachment.of(data, None).sha256 != attachment["sha256"]:
        raise ValueError(f"an earlier turn's attachment {path} has changed since it was sent")
    return media_part(data, attachment.get("media_type"), Path(path).name, f"attachment {path}")
