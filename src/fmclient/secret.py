"""An API key that never shows itself in a repr, str, log line or traceback."""

from __future__ import annotations

import threading

__all__ = ["Secret", "redact", "register_secret"]

# Every key fmclient has handled, so error text echoed back by a provider can be scrubbed.
_known: set[str] = set()
_known_lock = threading.Lock()
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words


def register_secret(value: str | None) -> None:
    if value and len(value) >= MIN_SECRET_LENGTH and value not in _known:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every known key (and any long prefix of one) replaced by asterisks."""
    for value in _known:
        if value in text:
            text = text.replace(value, "**********")
        elif len(value) > 16 and value[:12] in text:
            # Providers echo keys partly masked ("sk-abc...xyz"): the visible prefix goes too.
            text = text.replace(value[:12], "**********")
    return text


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret must be a str")
        register_secret(value)
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> None:  # type: ignore[override]
        # Pickling would write the key in clear text to wherever the pickle goes.
        raise TypeError("Secret cannot be pickled")
