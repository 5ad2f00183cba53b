"""What every command shares: exit codes, the one-line error, stdin, ``-o`` options, JSON out."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from fmclient.secret import redact

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(error: BaseException, warnings: Sequence[str] = ()) -> None:
    """The one error line of a failed command; warnings logged during it are folded into it."""
    also = "".join(f" (warning: {message})" for message in warnings)
    print(f"fmclient: {type(error).__name__}: {redact(str(error))}{also}", file=sys.stderr)


class Warnings:
    """Collects what fmclient logs at WARNING during a command (a retiring model, say), so the CLI
    prints it as its own ``fmclient: warning:`` line after a command that succeeded, or folds it into
    the one error line of a command that failed, instead of Python's bare last-resort output."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        outer = self

        class _Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.messages.append(redact(record.getMessage()))

        self._logger = logging.getLogger("fmclient")
        self._handler = _Collect(logging.WARNING)

    def __enter__(self) -> Warnings:
        self._logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)


def warn(message: str) -> None:
    print(f"fmclient: {redact(message)}", file=sys.stderr)


def read_stdin(what: str) -> str:
    if sys.stdin is None or sys.stdin.closed or sys.stdin.isatty():
        raise ValueError(f"no {what} given: pass it as an argument or pipe it on stdin")
    try:
        return sys.stdin.read()
    except OSError as error:  # stdin closed by the caller (``<&-``): a bad descriptor
        raise ValueError(f"no {what} given: stdin cannot be read ({error.strerror})") from None


def read_stdin_bytes(what: str) -> bytes:
    """All of stdin as bytes (an attachment, audio): refused when stdin is a terminal or closed."""
    stream = sys.stdin
    if stream is None or stream.closed or stream.isatty():
        raise ValueError(f"no {what} given: pipe it on stdin")
    try:
        data: bytes = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    except OSError as error:  # stdin closed by the caller (``<&-``): a bad descriptor
        raise ValueError(f"no {what} given: stdin cannot be read ({error.strerror})") from None
    if not data:
        raise ValueError(f"no {what} given: stdin is empty")
    return data


def provider_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``-o KEY=VALUE`` pairs: a VALUE that is JSON (``40``, ``true``, ``[1]``) is that value, else text."""
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"-o takes KEY=VALUE, not {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def reasoning_value(text: str | None) -> str | int | None:
    """``--reasoning high`` is an effort, ``--reasoning 2048`` a token budget."""
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text.strip()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
