"""The prompt log: every prompt and answer, in a local SQLite database.

The ``fmclient`` command logs each exchange here (``fmclient logs`` reads it back); a Python app
opts in with ``Client(hooks=[LogHook()])``. The database lives in the user's data directory
(``$XDG_DATA_HOME/fmclient/logs.db``, ``~/Library/Application Support/fmclient`` on macOS,
``%LOCALAPPDATA%\\fmclient`` on Windows; ``$FMCLIENT_LOGS_PATH`` names another file). It is
created readable by its owner only, in WAL mode with a busy timeout so that several processes can
log at once, and its schema is versioned: :data:`MIGRATIONS` are applied in order and
``PRAGMA user_version`` records how many have run.

What is stored: the model and provider, the prompt, system prompt and answer, the tool calls,
usage, cost (or why it is unknown), duration, conversation id, the provider options (names that
look like credentials dropped, known keys redacted) and, for attachments, their SHA-256, media
type, size and path, never their bytes. A key never reaches the log: every text passes through
:func:`fmclient.secret.redact` first.

When the database cannot be written (locked past the timeout, corrupt, disk full), the record is
appended to ``logs-pending.jsonl`` beside it, and the next successful write adds it: an exchange
is never lost because the log was busy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.errors import FMClientError
from fmclient.hooks import Hook
from fmclient.secret import redact

if TYPE_CHECKING:
    from fmclient.hooks import CallInfo
    from fmclient.types import Completion, Embeddings, Images, MediaPart, Message, Speech, Transcription

__all__ = [
    "MIGRATIONS",
    "Attachment",
    "LogHook",
    "LogRecord",
    "LogStore",
    "LogStoreError",
    "default_log_path",
    "logging_enabled",
    "set_logging_enabled",
    "user_data_dir",
]

BUSY_TIMEOUT_MS = 5000
PENDING_FILE = "logs-pending.jsonl"
OFF_FILE = "logs-off"
# Option names whose values are credentials: never stored, whatever their value.
_SECRET_NAMES = ("key", "token", "secret", "password", "authorization", "credential")


class LogStoreError(FMClientError):
    """The log database cannot be opened, read or written (locked, corrupt, not a database)."""


def user_data_dir() -> Path:
    """Where fmclient keeps user data (the log): the platform's per-user data directory."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "fmclient"


def default_log_path() -> Path:
    explicit = os.environ.get("FMCLIENT_LOGS_PATH")
    return Path(explicit).expanduser() if explicit else user_data_dir() / "logs.db"


def logging_enabled(path: Path | None = None) -> bool:
    """False after ``fmclient logs off`` (a marker file beside the database)."""
    return not ((path or default_log_path()).parent / OFF_FILE).exists()


def set_logging_enabled(enabled: bool, path: Path | None = None) -> None:
    marker = (path or default_log_path()).parent / OFF_FILE
    if enabled:
        marker.unlink(missing_ok=True)
    else:
        _private_dir(marker.parent)
        marker.touch()


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a prompt, remembered by its hash (and path, to send it again)."""

    sha256: str
    media_type: str | None
    size: int
    path: str | None = None

    @classmethod
    def of(cls, data: bytes, media_type: str | None, path: str | None = None) -> Attachment:
        return cls(hashlib.sha256(data).hexdigest(), media_type, len(data), path)


@dataclass(slots=True)
class LogRecord:
    """One exchange as the log stores it. Build one with :meth:`from_completion`."""

    model: str
    provider: str
    prompt: str
    answer: str
    system: str | None = None
    conversation_id: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    cost: str | None = None  # a Decimal as text: exact
    currency: str | None = None
    cost_reason: str | None = None
    finish_reason: str | None = None
    duration_ms: int | None = None
    attachments: list[Attachment] = field(default_factory=list)
    source: str = "cli"
    datetime_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    error: str | None = None
    #: what was asked: "chat" (complete, stream, a chat turn), "transcribe", "speak", "embed",
    #: "image" or "batch"
    operation: str = "chat"
    #: the turn's reply as :meth:`Message.to_json <fmclient.types.Message.to_json>` data: the
    #: answer with the provider's opaque state (thinking signatures, reasoning items, audio ids)
    #: and, for a tool loop, every step's tool calls and results; what continuing sends again
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_completion(
        cls,
        completion: Completion | None,
        *,
        prompt: str,
        model: str,
        provider: str,
        system: str | None = None,
        conversation_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        attachments: Sequence[Attachment] = (),
        source: str = "cli",
        partial_answer: str | None = None,
        error: str | None = None,
    ) -> LogRecord:
        """The record of one exchange; ``completion`` is None when the answer was cut short
        (``partial_answer`` then holds what arrived, ``error`` why it stopped). ``model`` and
        ``provider`` are what was asked (the configured provider name and model id)."""
        record = cls(
            model=model,
            provider=provider,
            prompt=prompt,
            answer=partial_answer or "",
            system=system,
            conversation_id=conversation_id,
            options=safe_options(options or {}),
            duration_ms=None if duration is None else round(duration * 1000),
            attachments=list(attachments),
            source=source,
            error=error,
        )
        if completion is not None:
            record.answer = completion.text
            record.reasoning = completion.reasoning
            record.finish_reason = completion.finish_reason
            record.tool_calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
            record.usage = completion.usage.to_dict()
            cost = completion.cost
            if cost is None:
                record.cost_reason = completion.cost_reason
            else:
                record.cost, record.currency = str(cost.total), cost.currency
        return record

    def add_run(self, run: Any) -> None:
        """A tool loop's turn (a :class:`~fmclient.tool_loop.Run`): every step's tool calls with
        their results, and usage and cost summed over the steps."""
        self.tool_calls = [
            {
                "step": step.number,
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                **_result_of(step.tool_results, call.id),
            }
            for step in run.steps
            for call in step.tool_calls
        ]
        if run.steps:
            self.usage = run.usage.to_dict()
            cost = run.cost
            if cost is None:
                self.cost, self.currency, self.cost_reason = None, None, run.cost_reason
            else:
                self.cost, self.currency, self.cost_reason = str(cost.total), cost.currency, None

    @classmethod
    def for_operation(
        cls,
        operation: str,
        result: Any,
        *,
        prompt: str,
        model: str,
        provider: str,
        answer: str = "",
        options: Mapping[str, Any] | None = None,
        duration: float | None = None,
        attachments: Sequence[Attachment] = (),
        source: str = "cli",
        error: str | None = None,
    ) -> LogRecord:
        """The record of a call that is not a chat turn (transcribe, speak, embed, image, batch):
        ``result`` is what it returned (None when it failed), read for its usage and cost."""
        record = cls(
            model=model,
            provider=provider,
            prompt=prompt,
            answer=answer,
            options=safe_options(options or {}),
            duration_ms=None if duration is None else round(duration * 1000),
            attachments=list(attachments),
            source=source,
            error=error,
            operation=operation,
        )
        if result is not None:
            usage = getattr(result, "usage", None)
            record.usage = usage.to_dict() if usage is not None else {}
            cost = result.cost
            if cost is None:
                record.cost_reason = result.cost_reason
            else:
                record.cost, record.currency = str(cost.total), cost.currency
        return record


def _result_of(results: Sequence[Any], call_id: str) -> dict[str, Any]:
    for result in results:
        if result.call_id == call_id:
            out: dict[str, Any] = {"result": result.text}
            if result.is_error:
                out["error"] = result.error_type or "error"
            return out
    return {}


def safe_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as the log keeps them: credential-like names dropped, JSON values, keys redacted."""
    kept: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or any(word in name.lower() for word in _SECRET_NAMES):
            continue
        kept[name] = json.loads(redact(json.dumps(value, default=str)))
    return kept


# -- schema ---------------------------------------------------------------------------------
# Each migration is a small function; MIGRATIONS[i] brings the schema from version i to i + 1.
# Append new ones, never edit a released one: a user's database may be at any version.


def _m001_tables(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            name TEXT,
            model TEXT,
            created_utc TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE responses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT REFERENCES conversations(id),
            datetime_utc TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            prompt TEXT NOT NULL,
            system TEXT,
            answer TEXT NOT NULL,
            reasoning TEXT,
            tool_calls TEXT,
            options TEXT,
            usage TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost TEXT,
            currency TEXT,
            cost_reason TEXT,
            finish_reason TEXT,
            duration_ms INTEGER,
            source TEXT NOT NULL,
            error TEXT
        )"""
    )
    db.execute("CREATE INDEX responses_conversation ON responses(conversation_id, id)")
    db.execute("CREATE INDEX responses_model ON responses(model)")


def _m002_attachments(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE attachments (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT,
            size INTEGER NOT NULL,
            path TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE response_attachments (
            response_id INTEGER NOT NULL REFERENCES responses(id),
            sha256 TEXT NOT NULL REFERENCES attachments(sha256),
            position INTEGER NOT NULL,
            PRIMARY KEY (response_id, position)
        )"""
    )


def _m003_search(db: sqlite3.Connection) -> None:
    # An external-content FTS5 index over the texts a person searches; triggers keep it in step.
    db.execute(
        "CREATE VIRTUAL TABLE responses_fts USING fts5(prompt, system, answer, content='responses', content_rowid='id')"
    )
    db.execute(
        """CREATE TRIGGER responses_ai AFTER INSERT ON responses BEGIN
            INSERT INTO responses_fts(rowid, prompt, system, answer)
            VALUES (new.id, new.prompt, new.system, new.answer);
        END"""
    )
    db.execute(
        """CREATE TRIGGER responses_ad AFTER DELETE ON responses BEGIN
            INSERT INTO responses_fts(responses_fts, rowid, prompt, system, answer)
            VALUES ('delete', old.id, old.prompt, old.system, old.answer);
        END"""
    )
    db.execute("INSERT INTO responses_fts(responses_fts) VALUES ('rebuild')")  # rows logged before the index


def _m004_operation(db: sqlite3.Connection) -> None:
    # Transcriptions, speech, embeddings, images and batches are logged too: which call a row is.
    db.execute("ALTER TABLE responses ADD COLUMN operation TEXT NOT NULL DEFAULT 'chat'")


def _m005_messages(db: sqlite3.Connection) -> None:
    # Each turn's reply messages as JSON, so a continued conversation carries the provider's
    # opaque state and the tool steps, not the answer's text alone. NULL on older rows: their
    # answer text is sent again, as before.
    db.execute("ALTER TABLE responses ADD COLUMN messages TEXT")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_tables,
    _m002_attachments,
    _m003_search,
    _m004_operation,
    _m005_messages,
]


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


class LogStore:
    """The log database. Open it with ``LogStore()`` (the user's) or ``LogStore(path)``.

    Every method opens a short transaction: a writer holds the lock for one insert, so two
    processes logging at once both get in (the other waits up to the busy timeout).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_log_path()
        # One connection, one transaction at a time: a client's hook may run on many threads.
        self._lock = threading.Lock()
        try:
            self._open()
        except sqlite3.Error as error:
            raise self._error("open", error) from error
        except OSError as error:  # the directory cannot be made, the file cannot be created
            raise LogStoreError(f"cannot open the log database {self.path}: {error.strerror or error}") from error

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Connect and migrate, trying again while another process holds the lock.

        SQLite answers "locked" at once, without its busy handler, to a connection that opens
        while another one is switching the file to WAL or migrating it (two processes logging
        their first record at once): those waits go through this loop, within the same timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            db = None
            try:
                db = self._db = self._connect()
                self._migrate()
                return db
            except sqlite3.OperationalError as error:
                if db is not None:
                    db.close()
                text = str(error)
                if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        _private_dir(self.path.parent)
        # Created 0600 before SQLite opens it; SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        if sys.platform != "win32" and self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)  # a log made readable by others (by hand, by an old tool)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _migrate(self) -> None:
        if self.schema_version() >= len(MIGRATIONS):
            return
        with self._transaction():  # IMMEDIATE: a second process waits, then finds the work done
            version = self.schema_version()
            for migration in MIGRATIONS[version:]:
                migration(self._db)
            self._db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _error(self, doing: str, error: sqlite3.Error) -> LogStoreError:
        text = str(error)
        if "locked" in text or "busy" in text:
            why = f"it is locked by another process (waited {BUSY_TIMEOUT_MS / 1000:g} s)"
        elif "not a database" in text or "malformed" in text:
            why = "it is not a valid SQLite database (corrupt?): move it away to start a new log"
        else:
            why = text
        return LogStoreError(f"cannot {doing} the log database {self.path}: {why}")

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")

    def _transaction(self) -> LogStore._Tx:
        return LogStore._Tx(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------
    def log(self, record: LogRecord) -> int:
        """Store one exchange (and any kept in the pending file); returns its id."""
        claimed: Path | None = None
        try:
            with self._lock, self._transaction() as db:
                # Claimed under the write lock by an atomic rename: another process flushing at
                # the same time finds no file, so no kept record goes in twice.
                claimed = self._claim_pending()
                for pending in read_pending_file(claimed) if claimed else ():
                    self._insert(db, pending)
                row_id = self._insert(db, record)
        except sqlite3.Error as error:
            if claimed is not None:  # not written: the kept records go back
                _append_private(pending_path(self.path), claimed.read_text(encoding="utf-8"))
                claimed.unlink()
            raise self._error("write to", error) from error
        if claimed is not None:
            claimed.unlink(missing_ok=True)
        return row_id

    def _claim_pending(self) -> Path | None:
        source = pending_path(self.path)
        claimed = source.with_name(f"{source.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.replace(source, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def _insert(self, db: sqlite3.Connection, record: LogRecord) -> int:
        if record.conversation_id is not None:
            db.execute(
                "INSERT OR IGNORE INTO conversations (id, name, model, created_utc) VALUES (?, ?, ?, ?)",
                (record.conversation_id, _title(record.prompt), record.model, record.datetime_utc),
            )
        cursor = db.execute(
            """INSERT INTO responses (conversation_id, datetime_utc, model, provider, prompt, system, answer,
                reasoning, tool_calls, options, usage, input_tokens, output_tokens, cost, currency, cost_reason,
                finish_reason, duration_ms, source, error, operation, messages)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                record.conversation_id,
                record.datetime_utc,
                record.model,
                record.provider,
                redact(record.prompt),
                None if record.system is None else redact(record.system),
                redact(record.answer),
                None if record.reasoning is None else redact(record.reasoning),
                redact(json.dumps(record.tool_calls)) if record.tool_calls else None,
                json.dumps(record.options) if record.options else None,
                json.dumps(record.usage) if record.usage else None,
                record.usage.get("input_tokens"),
                record.usage.get("output_tokens"),
                record.cost,
                record.currency,
                record.cost_reason,
                record.finish_reason,
                record.duration_ms,
                record.source,
                None if record.error is None else redact(record.error),
                record.operation,
                redact(json.dumps(record.messages)) if record.messages else None,
            ),
        )
        row_id = int(cursor.lastrowid or 0)
        for position, item in enumerate(record.attachments):
            db.execute(
                "INSERT OR IGNORE INTO attachments (sha256, media_type, size, path) VALUES (?, ?, ?, ?)",
                (item.sha256, item.media_type, item.size, item.path),
            )
            db.execute(
                "INSERT INTO response_attachments (response_id, sha256, position) VALUES (?, ?, ?)",
                (row_id, item.sha256, position),
            )
        return row_id

    # -- reading -----------------------------------------------------------------------------
    def responses(
        self,
        *,
        limit: int | None = 3,
        model: str | None = None,
        conversation_id: str | None = None,
        query: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` responses (all when None) matching the filters, oldest first."""
        where, params = [], []
        if model:
            where.append("(r.model = ? OR r.provider || '/' || r.model = ?)")
            params += [model, model]
        if conversation_id:
            where.append("r.conversation_id = ?")
            params.append(conversation_id)
        join = ""
        if query is not None and not query.strip():
            raise ValueError("the search text is empty")
        if query:
            join = "JOIN responses_fts ON responses_fts.rowid = r.id"
            where.append("responses_fts MATCH ?")
            params.append(_fts_query(query))
        sql = f"SELECT r.* FROM responses r {join}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            rows = [self._row(row) for row in self._db.execute(sql, params)]
        except sqlite3.Error as error:
            raise self._error("read", error) from error
        return rows[::-1]

    def _row(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in ("tool_calls", "options", "usage", "messages"):
            out[key] = json.loads(out[key]) if out[key] else ([] if key in ("tool_calls", "messages") else {})
        out["attachments"] = [
            dict(a)
            for a in self._db.execute(
                """SELECT a.sha256, a.media_type, a.size, a.path FROM response_attachments ra
                JOIN attachments a ON a.sha256 = ra.sha256 WHERE ra.response_id = ? ORDER BY ra.position""",
                (row["id"],),
            )
        ]
        return out

    def last_conversation_id(self) -> str | None:
        row = self._db.execute(
            "SELECT conversation_id FROM responses WHERE conversation_id IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def conversation_exists(self, conversation_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return row is not None

    def usage_totals(
        self, *, model: str | None = None, conversation_id: str | None = None, query: str | None = None
    ) -> list[dict[str, Any]]:
        """Per model: responses, tokens, and cost summed exactly (Decimal) with how many were unpriced."""
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.responses(limit=None, model=model, conversation_id=conversation_id, query=query):
            entry = totals.setdefault(
                (row["provider"], row["model"]),
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "responses": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost": Decimal(0),
                    "currency": row["currency"] or "USD",
                    "unpriced": 0,
                },
            )
            entry["responses"] += 1
            entry["input_tokens"] += row["input_tokens"] or 0
            entry["output_tokens"] += row["output_tokens"] or 0
            if row["cost"] is None:
                entry["unpriced"] += 1
            else:
                entry["cost"] += Decimal(row["cost"])
        return [totals[key] for key in sorted(totals)]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])


def pending_path(db_path: Path) -> Path:
    return db_path.parent / PENDING_FILE


def read_pending(db_path: Path) -> list[LogRecord]:
    """The records kept in the pending file beside ``db_path`` (waiting for the next write)."""
    path = pending_path(db_path)
    return read_pending_file(path) if path.exists() else []


def read_pending_file(path: Path) -> list[LogRecord]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            data["attachments"] = [Attachment(**a) for a in data.get("attachments", [])]
            records.append(LogRecord(**data))
    return records


def keep_pending(record: LogRecord, db_path: Path | None = None) -> Path:
    """Append ``record`` to the pending file (0600) beside the database; returns its path."""
    path = pending_path(db_path or default_log_path())
    data = asdict(record)
    for key in ("prompt", "answer", "system", "reasoning", "error"):
        if data[key] is not None:
            data[key] = redact(data[key])
    _append_private(path, json.dumps(data) + "\n")
    return path


def _append_private(path: Path, text: str) -> None:
    _private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


def _title(prompt: str) -> str:
    line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return line[:60]


def _fts_query(query: str) -> str:
    """Each word of ``query`` as an FTS5 string, so punctuation a person types is not syntax."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query.split())


def iter_media_parts(message: Message) -> Iterator[MediaPart]:
    """The image, audio, video and document parts of ``message``."""
    from fmclient.types import MEDIA_PARTS

    if not isinstance(message.content, str):
        for part in message.content:
            if isinstance(part, MEDIA_PARTS):
                yield part


class LogHook(Hook):
    """Logs every chat call a :class:`~fmclient.Client` makes into the prompt log (opt-in).

    ``Client(hooks=[LogHook()])``; ``LogHook(path)`` for another database, ``conversation_id=``
    to group the calls. Each finished ``complete``/``stream`` call is stored with its last user
    message as the prompt; embeddings and images are not logged. A failure to write is reported
    on the ``fmclient`` logger (hooks fail open) and the record kept in the pending file. The hook
    is an explicit opt-in, so it logs whether or not ``fmclient logs off`` is in effect (that
    switch is the command line's).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, conversation_id: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.conversation_id = conversation_id
        self._store: LogStore | None = None
        self._opening = threading.Lock()

    def on_call_end(
        self,
        call: CallInfo,
        result: Completion | Embeddings | Images | Transcription | Speech | None,
        error: BaseException | None,
    ) -> None:
        from fmclient.types import Completion, Request

        request = call.request
        if not isinstance(request, Request) or not isinstance(result, Completion):
            return
        users = [m for m in request.messages if m.role == "user"]
        last = users[-1] if users else None
        # Inline media by hash; media given by URL were never bytes here, and are not recorded.
        attachments = [
            Attachment.of(part.data, part.media_type)
            for part in (iter_media_parts(last) if last else ())
            if part.data is not None
        ]
        record = LogRecord.from_completion(
            result,
            prompt=last.text if last else "",
            model=call.model,
            provider=call.provider,
            system=request.system,
            conversation_id=self.conversation_id,
            options={
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "reasoning": request.reasoning,
                **dict(request.provider_options),
            },
            duration=(call.ended or time.perf_counter()) - call.started,
            attachments=attachments,
            source="python",
        )
        record.messages = [result.message.to_json()]
        try:
            with self._opening:
                if self._store is None:
                    self._store = LogStore(self.path)
            self._store.log(record)
        except LogStoreError:
            keep_pending(record, self.path or default_log_path())
            raise
