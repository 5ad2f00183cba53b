"""Model-family profiles: what a family accepts, decided once, whichever host serves it.

Claude is served by Anthropic, Bedrock and Vertex; Llama by Bedrock, Ollama and llama.cpp;
Mistral by its API, Bedrock and Ollama. What the model accepts (tools, a forced tool choice,
images, a system prompt, sampling parameters, structured output, its output limit) belongs to
the family. The table is data (``families.toml``, read on the first lookup); this module finds a
model's family by its id, whatever shape the host gives that id::

    >>> profile_for("us.anthropic.claude-sonnet-4-5-20250929-v1:0").family
    'claude-4-5'
    >>> profile_for("claude-sonnet-4-5@20250929").family
    'claude-4-5'

Every adapter's ``capabilities(model)`` starts from :func:`profile_for` and may only narrow the
profile for reasons of its own host, with :meth:`Profile.restrict`, whose reason the refusal
quotes. The client checks each request with :meth:`Profile.check` before sending anything.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from fmclient.profiles._profile import MEDIA_SWITCHES, Profile, StructuredOutputMode

__all__ = [
    "DEFAULT_PROFILE",
    "Capabilities",
    "Profile",
    "StructuredOutputMode",
    "families",
    "has_own_family",
    "native_provider",
    "normalise_model_id",
    "profile_for",
]

#: The earlier name of :class:`Profile`, kept for code written against fmclient 0.1.
Capabilities = Profile

#: What an unknown model gets: everything is sent, and the server decides.
DEFAULT_PROFILE = Profile()

# Bedrock ids: "<region>.<vendor>.<model>-v1:0" (cross-region inference profiles) or "<vendor>.<model>".
# Compiled on the first lookup, not at import.
_BEDROCK_PREFIXES = (
    r"^(us|us-gov|eu|apac|ap|jp|au|ca|global)\.",
    r"^(anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer|google|nvidia|minimax|moonshot"
    r"|twelvelabs|stability|luma)\.",
)


def normalise_model_id(model: str) -> str:
    """The family-bearing part of a host-specific model id (see ``families.toml`` for the rules)."""
    name = model.strip().lower()
    if name.startswith("ft:"):  # OpenAI fine-tunes: "ft:gpt-4o-mini-2024-07-18:org::id"
        name = name.split(":")[1]
    name = name.rsplit("/", 1)[-1]  # ARNs, "models/...", "publishers/google/models/...", "org/repo"
    name = name.split("@", 1)[0]  # Vertex: "claude-sonnet-4-5@20250929"
    for prefix in _BEDROCK_PREFIXES:
        name = re.sub(prefix, "", name, count=1)  # re caches the compiled pattern
    return name.split(":", 1)[0]  # Ollama tags ("llama3.2:3b"), Bedrock versions ("-v1:0")


class _Family:
    __slots__ = ("catch_all", "hosts", "name", "pattern", "profile")

    def __init__(
        self, name: str, pattern: re.Pattern[str], profile: Profile, hosts: dict[str, Profile], catch_all: bool = False
    ) -> None:
        self.name = name
        self.pattern = pattern
        self.profile = profile
        self.hosts = hosts
        self.catch_all = catch_all


_table: list[_Family] | None = None
_natives: list[tuple[re.Pattern[str], str]] = []
_table_lock = threading.Lock()
_cache: dict[tuple[str, str | None], Profile] = {}


def _load() -> list[_Family]:
    from importlib import resources

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads(resources.files(__package__).joinpath("families.toml").read_text("utf-8"))
    table: list[_Family] = []
    for entry in data["family"]:
        # TOML arrays become tuples: profiles are frozen and compared.
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        name = str(fields.pop("name"))
        pattern = re.compile(str(fields.pop("match")))
        catch_all = bool(fields.pop("catch_all", False))
        hosts: Mapping[str, list[Mapping[str, Any]]] = fields.pop("hosts", {})
        if not catch_all:  # a catch-all asserts nothing it does not say; the server decides
            for switch in MEDIA_SWITCHES:
                fields.setdefault(switch, False)  # a known family takes a media kind only where it says so
        try:
            profile = Profile(family=name, **fields)
            narrowed: dict[str, Profile] = {}
            for host, restrictions in hosts.items():
                on_host = profile
                for restriction in restrictions:
                    on_host = on_host.restrict(**dict(restriction))
                narrowed[host] = on_host
        except (TypeError, ValueError) as exc:
            raise ValueError(f"families.toml: family {name!r}: {exc}") from exc
        table.append(_Family(name, pattern, profile, narrowed, catch_all))
    _natives[:] = [(re.compile(str(entry["match"])), str(entry["provider"])) for entry in data.get("native", [])]
    return table


def has_own_family(model: str) -> bool:
    """Whether ``model`` matches a family of its own, not a catch-all ("gpt", "claude", ...) that
    takes any id of its maker."""
    name = normalise_model_id(model)
    for family in _families():
        if family.pattern.match(name):
            return not family.catch_all
    return False


def native_provider(model: str) -> str | None:
    """The provider whose own API serves ``model`` by this bare id (``gpt-4o`` -> ``"openai"``,
    ``claude-sonnet-4-5`` -> ``"anthropic"``), from the ``[[native]]`` table of ``families.toml``;
    None for an id in a host's own shape (a Bedrock, Vertex or Ollama id) or of an open-weights
    family that no one provider owns. An id served by several hosts goes to its maker's API."""
    name = model.strip().lower()
    if not name or normalise_model_id(name) != name:
        return None  # "anthropic.claude-...-v1:0", "claude-...@2025...", "llama3.2:3b": a host's id
    _families()  # loads the table, natives included
    for pattern, provider in _natives:
        if pattern.match(name):
            return provider
    return None


def families() -> list[tuple[str, str, Profile]]:
    """Every family in table order: ``(name, pattern, profile)``."""
    return [(f.name, f.pattern.pattern, f.profile) for f in _families()]


def _families() -> list[_Family]:
    global _table
    if _table is None:
        with _table_lock:
            if _table is None:
                _table = _load()
    return _table


def profile_for(model: str, host: str | None = None) -> Profile:
    """The profile of ``model``'s family, narrowed for ``host`` (an adapter type such as
    ``"bedrock"``) where the table says that host restricts it. Unknown models get
    :data:`DEFAULT_PROFILE`."""
    key = (model, host)
    found = _cache.get(key)
    if found is None:
        found = _lookup(model, host)
        if len(_cache) > 4096:  # ids come from configuration and callers: bound it anyway
            _cache.clear()
        _cache[key] = found
    return found


def _lookup(model: str, host: str | None) -> Profile:
    name = normalise_model_id(model)
    for family in _families():
        if family.pattern.match(name):
            if host is not None and host in family.hosts:
                return family.hosts[host]
            return family.profile
    return DEFAULT_PROFILE
