"""When a model stops answering: what the providers and the installed SDKs say, and what
fmclient does about it before sending.

Two sources, both read on first use, never at import:

* ``retirements.toml`` (next to this module): retirement dates and the successor each provider
  names, for the models of its own API, each entry with its source.
* the installed SDKs' own files, read as source text (``ast``), never imported: the anthropic SDK
  ships a table of deprecated models with their end-of-life dates
  (``anthropic/_data/deprecated_models.py``) and a ``Model`` literal (``anthropic/types/model.py``);
  the openai SDK lists chat models in a ``ChatModel`` literal whose docstring gives each deprecated
  one its announced shutdown date (``openai/types/shared/chat_model.py``), embedding models in
  ``EmbeddingModel``, and image models in ``ImageModel``, whose docstring says in prose when each
  retired one was shut down. google-genai, boto3 and ollama publish neither list nor dates.

:func:`check_lifecycle` runs when a route is first used: a model past its date is refused with
:class:`~fmclient.errors.ConfigurationError` naming the successor, before any request; a model
with an announced date logs one warning per process and model on the ``fmclient`` logger, with
the date and successor (the anthropic SDK's own per-call ``DeprecationWarning`` for that model is
silenced then, since fmclient's warning says the same once). The dates are the provider's own
API's: Bedrock and Vertex AI keep their own schedules for the models they host, and an
OpenAI-compatible server other than OpenAI is not judged by OpenAI's.
"""

from __future__ import annotations

import ast
import datetime
import functools
import importlib.util
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmclient.providers.base import ProviderSettings

__all__ = ["Deprecation", "applies_to", "check_lifecycle", "deprecation", "known_models", "warn_once"]

DEPRECATION_PAGES = {
    "anthropic": "https://platform.claude.com/docs/en/about-claude/model-deprecations",
    "openai": "https://developers.openai.com/api/docs/deprecations",
    "gemini": "https://ai.google.dev/gemini-api/docs/deprecations",
}


@dataclass(frozen=True, slots=True)
class Deprecation:
    """A model its provider retires: the date it stops answering and what replaces it."""

    model: str
    retires: str  # as the source writes it: "January 22nd, 2027", "2026-12-11"
    source: str  # who said so: "anthropic" / "openai" (the installed SDK), or retirements.toml's source
    successor: str | None = None
    retires_on: datetime.date | None = None  # None: no date given ("Not a supported model ID")

    def retired(self, today: datetime.date | None = None) -> bool:
        return self.retires_on is not None and self.retires_on <= (today or _today())

    def __str__(self) -> str:
        instead = f"; use {self.successor}" if self.successor else ""
        if self.retires_on is not None:
            verb = "retired" if self.retired() else "retires"
            return f"deprecated, {verb} {self.retires_on.isoformat()}{instead}"
        return f"deprecated ({self.retires}){instead}"


def _today() -> datetime.date:
    """Today in UTC: the providers' dates are UTC days. (Tests replace this.)"""
    return datetime.datetime.now(datetime.timezone.utc).date()


_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")


def _parse_date(text: str) -> datetime.date | None:
    """``2026-12-11`` or ``January 22nd, 2027``; None for text without a date."""
    cleaned = _ORDINAL.sub(r"\1", text.strip())
    for layout in ("%Y-%m-%d", "%B %d, %Y"):
        try:
            return datetime.datetime.strptime(cleaned, layout).date()
        except ValueError:
            continue
    return None


# Which SDK's data speaks for an adapter type (named providers of type "openai" that are not
# OpenAI itself serve other models: the openai SDK's list does not apply to them).
_SDK_FOR_TYPE = {"anthropic": "anthropic", "openai": "openai"}


def _sdk_file(package: str, *parts: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)  # top-level: locates, executes nothing
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def _module(package: str, *parts: str) -> ast.Module | None:
    path = _sdk_file(package, *parts)
    if path is None:
        return None
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _literal_strings(node: ast.AST) -> set[str]:
    """Every string inside ``Literal[...]`` in an annotation or alias expression."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and getattr(sub.value, "id", None) == "Literal":
            for leaf in ast.walk(sub.slice):
                if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                    found.add(leaf.value)
    return found


def _assigned(module: ast.Module, name: str) -> tuple[ast.AST | None, str | None]:
    """The value assigned to ``name`` and the docstring right after it, if any."""
    for index, statement in enumerate(module.body):
        target: str | None = None
        value: ast.AST | None = None
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            target, value = statement.target.id, statement.value
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = getattr(statement.targets[0], "id", None), statement.value
        if target != name:
            continue
        doc = None
        following = module.body[index + 1] if index + 1 < len(module.body) else None
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = following.value.value if isinstance(following.value.value, str) else None
        return value, doc
    return None, None


@functools.cache
def _anthropic() -> tuple[frozenset[str] | None, dict[str, str]]:
    models: frozenset[str] | None = None
    module = _module("anthropic", "types", "model.py")
    if module is not None:
        value, _ = _assigned(module, "Model")
        models = frozenset(_literal_strings(value)) if value is not None else None
    retiring: dict[str, str] = {}
    module = _module("anthropic", "_data", "deprecated_models.py")
    if module is not None:
        value, _ = _assigned(module, "DEPRECATED_MODELS")
        if value is not None:
            try:
                table = ast.literal_eval(value)
            except ValueError:
                table = {}
            retiring = {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}
    return models, retiring


_SHUTDOWN = re.compile(r"Announced shutdown date:\s*(\d{4}-\d{2}-\d{2})")
# The same in prose, as the ImageModel docstring words it: "... was shut down on October 23,
# 2026", "This model was retired on May 12, 2026".
_SHUT_ON = re.compile(r"(?:shut down|retired|retires|will shut down) on\s+([A-Z][a-z]+ \d{1,2}(?:st|nd|rd|th)?, \d{4})")


@functools.cache
def _openai() -> tuple[frozenset[str] | None, dict[str, str]]:
    models: set[str] = set()
    retiring: dict[str, str] = {}
    chat = _module("openai", "types", "shared", "chat_model.py")
    if chat is None:
        return None, {}
    docs: list[str | None] = []
    value, doc = _assigned(chat, "ChatModel")
    if value is not None:
        models |= _literal_strings(value)
        docs.append(doc)
    for parts, name, dated in (
        (("embedding_model.py",), "EmbeddingModel", False),
        # "GPT Image 1 was shut down on October 23, 2026": the image models' dates are prose.
        (("image_model.py",), "ImageModel", True),
        # The audio models retire on their own dates, in their own listings' docstrings.
        (("audio_model.py",), "AudioModel", True),
        (("audio", "speech_model.py"), "SpeechModel", True),
    ):
        listing = _module("openai", "types", *parts)
        if listing is not None:
            value, doc = _assigned(listing, name)
            if value is not None:
                models |= _literal_strings(value)
                if dated:
                    docs.append(doc)
    # A docstring lists deprecated values as bullets: - "a", "b": Announced shutdown date: D.
    # (A bullet without a date, e.g. "Not a supported model ID", still marks its models.)
    for bullet in (b for doc in docs for b in re.split(r"\n(?=- )", doc or "")):
        if not bullet.startswith("- "):
            continue
        text = " ".join(bullet.split())
        names, _, description = text[2:].partition(":")
        date = _SHUTDOWN.search(text) or _SHUT_ON.search(text)
        for name in re.findall(r'"([^"]+)"', names):
            retiring[name] = date.group(1) if date else description.strip().split(". ")[0] or "no date given"
    return (frozenset(models) if models else None), retiring


def _data(type_name: str) -> tuple[frozenset[str] | None, dict[str, str]]:
    sdk = _SDK_FOR_TYPE.get(type_name)
    if sdk == "anthropic":
        return _anthropic()
    if sdk == "openai":
        return _openai()
    return None, {}


@functools.cache
def _table() -> dict[tuple[str, str], tuple[datetime.date, str | None, str]]:
    """retirements.toml: (provider type, model) -> (date, successor, source)."""
    from importlib import resources

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data: dict[str, Any] = tomllib.loads(resources.files("fmclient").joinpath("retirements.toml").read_text("utf-8"))
    table: dict[tuple[str, str], tuple[datetime.date, str | None, str]] = {}
    for entry in data.get("retirement", []):
        for model in entry["models"]:
            table[(entry["provider"], model)] = (entry["retires"], entry.get("successor"), entry["source"])
    return table


def known_models(type_name: str) -> frozenset[str] | None:
    """The model ids the installed SDK of this adapter type lists, or None when it lists none."""
    return _data(type_name)[0]


def deprecation(type_name: str, model: str) -> Deprecation | None:
    """What is known of ``model``'s retirement on its provider's own API, or None (not deprecated,
    or no data): retirements.toml first (it names the successor), then the installed SDK's data."""
    listed = _table().get((type_name, model))
    if listed is not None:
        date, successor, source = listed
        return Deprecation(model, date.isoformat(), source, successor, date)
    text = _data(type_name)[1].get(model)
    if text is None:
        return None
    return Deprecation(model=model, retires=text, source=_SDK_FOR_TYPE[type_name], retires_on=_parse_date(text))


@functools.cache
def _on_vertex_too() -> frozenset[str]:
    """Gemini model ids whose entry says ``vertex = true``: Google shut them down on Vertex AI as
    well (every Imagen model), so the date applies there too."""
    from importlib import resources

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data: dict[str, Any] = tomllib.loads(resources.files("fmclient").joinpath("retirements.toml").read_text("utf-8"))
    return frozenset(
        model for entry in data.get("retirement", []) if entry.get("vertex") is True for model in entry["models"]
    )


def applies_to(settings: ProviderSettings) -> bool:
    """Whether this provider is the provider's own API, whose retirement dates apply: not Bedrock
    or Vertex AI (their own schedules), not an OpenAI-compatible server other than OpenAI."""
    if settings.type == "openai":
        return settings.name == "openai"
    if settings.type == "gemini":
        return not settings.options.get("vertexai")
    return settings.type == "anthropic"


def check_lifecycle(settings: ProviderSettings, model: str) -> Deprecation | None:
    """Before the first request to ``model``: refuse it when retired, warn once when retiring.

    Raises :class:`~fmclient.errors.ConfigurationError` for a retired model, naming its successor.
    """
    if not applies_to(settings) and not (settings.type == "gemini" and model in _on_vertex_too()):
        return None
    found = deprecation(settings.type, model)
    if found is None:
        return None
    if found.retired():
        from fmclient.errors import ConfigurationError

        assert found.retires_on is not None  # retired() says so
        instead = (
            f"use {settings.name}/{found.successor}, which its provider names as the replacement"
            if found.successor
            else f"see {DEPRECATION_PAGES.get(settings.type, 'the provider deprecations page')} for its replacement"
        )
        said = f" (per the installed {found.source} SDK)" if found.source in _SDK_FOR_TYPE else ""
        raise ConfigurationError(
            f"{settings.name}/{model} was retired on {found.retires_on.isoformat()}{said}: {instead}",
            provider=settings.name,
            model=model,
        )
    warn_once(settings.type, settings.name, model, found)
    return found


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(type_name: str, provider: str, model: str, found: Deprecation | None = None) -> Deprecation | None:
    """Log, once per process and model, that ``model`` is retiring (its date and successor);
    silence the SDK's own per-call warning for it."""
    if found is None:
        if type_name not in _SDK_FOR_TYPE and (type_name, model) not in _table():
            return None
        found = deprecation(type_name, model)
        if found is None:
            return None
    with _warned_lock:
        if (type_name, model) in _warned:
            return found
        _warned.add((type_name, model))
    import logging

    when = f"on {found.retires_on.isoformat()}" if found.retires_on else f"({found.retires})"
    said = f" (per the installed {found.source} SDK)" if found.source in _SDK_FOR_TYPE else ""
    instead = (
        f"; its replacement is {provider}/{found.successor}"
        if found.successor
        else "; point the alias or model name at a current model"
    )
    logging.getLogger("fmclient").warning(
        "%s/%s is deprecated: its provider retires it %s%s%s", provider, model, when, said, instead
    )
    if type_name == "anthropic":
        import warnings

        # The SDK warns on every call to this model; fmclient has said it once above.
        warnings.filterwarnings(
            "ignore", message=rf"The model '{re.escape(model)}' is deprecated", category=DeprecationWarning
        )
    return found
