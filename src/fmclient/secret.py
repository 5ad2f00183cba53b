"""An API key that never shows itself in a repr, str, log line or traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

__all__ = [
    "SDK_CREDENTIAL_ENV",
    "Secret",
    "redact",
    "register_environment_credentials",
    "register_secret",
    "scrub_exception",
]

# Every key fmclient has handled, so error text echoed back by a provider can be scrubbed.
# Copy-on-write: a writer swaps in a new tuple under the lock, and a reader iterates whichever
# tuple it picked up, so scrubbing in one thread never sees the collection change under it.
# Longest first, so a key that contains another key is replaced whole.
_known: tuple[str, ...] = ()
_known_lock = threading.Lock()
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words


def register_secret(value: str | None) -> None:
    global _known
    if not value or len(value) < MIN_SECRET_LENGTH or value in _known:
        return
    with _known_lock:
        if value not in _known:
            _known = tuple(sorted((*_known, value), key=len, reverse=True))


#: Credentials the provider SDKs read from the environment on their own, whether or not fmclient
#: passes them a key: ``anthropic`` (API key, auth token), ``openai``, ``google-genai`` (either
#: variable), ``ollama`` (a hosted server's key), boto3 (access keys, session token in either
#: spelling, the Bedrock API key), and the built-in Mistral provider's variable.
SDK_CREDENTIAL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "OLLAMA_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
)
# Extra headers the anthropic SDK adds to every request ("Name: value" lines): a gateway token
# often travels there.
_HEADER_ENV = ("ANTHROPIC_CUSTOM_HEADERS",)


def register_environment_credentials(env: Mapping[str, str] | None = None, extra: Iterable[str | None] = ()) -> None:
    """Register, for redaction, every credential an SDK may read from the environment itself, and
    the variables in ``extra`` (a provider's ``api_key_env``): every key in play is scrubbed from
    error text, logs and batch output, whoever read it. Called when an adapter is built."""
    import os

    env = os.environ if env is None else env
    for var in (*SDK_CREDENTIAL_ENV, *extra):
        if var:
            register_secret(env.get(var))
    for var in _HEADER_ENV:
        for line in (env.get(var) or "").splitlines():
            register_secret(line.partition(":")[2].strip())


def redact(text: str) -> str:
    """``text`` with every known key (and any long prefix of one) replaced by asterisks."""
    for value in _known:
        if value in text:
            text = text.replace(value, "**********")
        elif len(value) > 16 and value[:12] in text:
            # Providers echo keys partly masked ("sk-abc...xyz"): the visible prefix goes too.
            text = text.replace(value[:12], "**********")
    return text


def scrub_exception(exc: BaseException | None) -> None:
    """Redact every known key, in place, from an exception's text and from the exceptions
    chained to it (``__cause__`` and ``__context__``).

    A provider SDK's exception carries the provider's error text, which may echo the key, in its
    ``args`` and attributes such as ``message``. fmclient chains it to its own error (``raise
    ... from``), and a logged traceback prints the text of every exception in the chain.
    """
    if not _known:
        return
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current)
        pending += (current.__cause__, current.__context__)


def _scrub_one(exc: BaseException) -> None:
    args = exc.args
    cleaned = tuple(redact(arg) if isinstance(arg, str) else arg for arg in args)
    if cleaned != args:
        exc.args = cleaned
    attributes = getattr(exc, "__dict__", None)
    if not attributes:
        return
    for name, value in list(attributes.items()):
        if isinstance(value, str):
            text = redact(value)
            if text != value:
                attributes[name] = text  # the instance dict: plain attributes only, no setters
        elif name == "__notes__" and isinstance(value, list):
            value[:] = [redact(note) if isinstance(note, str) else note for note in value]


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

    # Immutable, so a copy is the same object: copy.deepcopy and dataclasses.asdict of a settings
    # object holding a Secret work (and still show it masked) instead of failing in __reduce__.
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self

    def __reduce__(self) -> None:  # type: ignore[override]
        # Pickling would write the key in clear text to wherever the pickle goes.
        raise TypeError("Secret cannot be pickled")
