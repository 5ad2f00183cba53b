"""What the installed provider SDKs say about a model: known to them, deprecated, retiring when.

Read from the SDKs' own files as source text (``ast``), never by importing them: asking costs
a few milliseconds and works in any install. The anthropic SDK ships a table of deprecated
models with their end-of-life dates (``anthropic/_data/deprecated_models.py``) and a ``Model``
literal (``anthropic/types/model.py``); the openai SDK lists chat models in a ``ChatModel``
literal whose docstring gives each deprecated one its announced shutdown date
(``openai/types/shared/chat_model.py``), and embedding and image models in ``EmbeddingModel`` and
``ImageModel``.
google-genai, boto3 and ollama publish neither list nor dates.

A call to a model its SDK lists as deprecated logs one warning per process on the ``fmclient``
logger (:func:`warn_once`); the anthropic SDK's own per-call ``DeprecationWarning`` for that
model is silenced then, since fmclient's warning says the same once.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deprecation", "deprecation", "known_models", "warn_once"]


@dataclass(frozen=True, slots=True)
class Deprecation:
    """A model its SDK marks as deprecated, and the date it stops answering."""

    model: str
    retires: str  # as the SDK writes it: "January 22nd, 2027", "2026-12-11"
    source: str  # which SDK said so

    def __str__(self) -> str:
        if any(c.isdigit() for c in self.retires):
            return f"deprecated, retires {self.retires}"
        return f"deprecated ({self.retires})"


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


@functools.cache
def _openai() -> tuple[frozenset[str] | None, dict[str, str]]:
    models: set[str] = set()
    retiring: dict[str, str] = {}
    chat = _module("openai", "types", "shared", "chat_model.py")
    if chat is None:
        return None, {}
    value, doc = _assigned(chat, "ChatModel")
    if value is not None:
        models |= _literal_strings(value)
    for filename, name in (("embedding_model.py", "EmbeddingModel"), ("image_model.py", "ImageModel")):
        listing = _module("openai", "types", filename)
        if listing is not None:
            value, _ = _assigned(listing, name)
            if value is not None:
                models |= _literal_strings(value)
    # The docstring lists deprecated values as bullets: - "a", "b": Announced shutdown date: D.
    # (A bullet without a date, e.g. "Not a supported model ID", still marks its models.)
    for bullet in re.split(r"\n(?=- )", doc or ""):
        if not bullet.startswith("- "):
            continue
        text = " ".join(bullet.split())
        names, _, description = text[2:].partition(":")
        date = _SHUTDOWN.search(text)
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


def known_models(type_name: str) -> frozenset[str] | None:
    """The model ids the installed SDK of this adapter type lists, or None when it lists none."""
    return _data(type_name)[0]


def deprecation(type_name: str, model: str) -> Deprecation | None:
    """The SDK's deprecation entry for ``model``, or None (not deprecated, or no data)."""
    date = _data(type_name)[1].get(model)
    if date is None:
        return None
    return Deprecation(model=model, retires=date, source=_SDK_FOR_TYPE[type_name])


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(type_name: str, provider: str, model: str) -> Deprecation | None:
    """Log, once per process, that ``model`` is deprecated; silence the SDK's per-call warning.

    Called when a route is first checked, so a call pays for the lookup once per target.
    """
    if type_name not in _SDK_FOR_TYPE:
        return None
    found = deprecation(type_name, model)
    if found is None:
        return None
    with _warned_lock:
        if (type_name, model) in _warned:
            return found
        _warned.add((type_name, model))
    import logging

    logging.getLogger("fmclient").warning(
        "%s/%s is deprecated: its provider retires it on %s (per the installed %s SDK); "
        "point the alias or model name at a current model",
        provider,
        model,
        found.retires,
        found.source,
    )
    if found.source == "anthropic":
        import warnings

        # The SDK warns on every call to this model; fmclient has said it once above.
        warnings.filterwarnings(
            "ignore", message=rf"The model '{re.escape(model)}' is deprecated", category=DeprecationWarning
        )
    return found
