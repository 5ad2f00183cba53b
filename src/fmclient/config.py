"""Layered settings: call arguments > environment variables > TOML config file > built-in defaults.

Loaded once when a :class:`~fmclient.Client` is built, never on the path of a model call.
Every value remembers where it came from (``Settings.sources``) for ``fmclient config``.

Config file (``$FMCLIENT_CONFIG``, else ``./fmclient.toml``, else the user config dir)::

    default_model = "claude-sonnet"
    max_retries = 3            # global; a provider table or a call can override it
    timeout = 60               # seconds for a whole call, retries and fallbacks included

    [aliases]
    claude-sonnet = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"

    [providers.anthropic]
    api_key_env = "WORK_ANTHROPIC_KEY"

    [providers.local-vllm]     # an extra named provider on a shared adapter
    type = "openai"
    base_url = "http://127.0.0.1:8000/v1"

    [fallbacks]
    claude-sonnet = ["gpt-sol", "gemini-flash"]

    [budget]
    max_cost = 5.00            # USD per client; see fmclient.budget

    [cache]                    # opt-in response cache; see fmclient.cache
    backend = "memory"

    [prices]                   # price a provider's calls with this genai-prices provider's table
    my-gateway = "openai"

    [rate_limits."openai"]     # requests / tokens per minute (see fmclient.limits)
    rpm = 500
    tpm = 200000

    telemetry = true           # OpenTelemetry spans and metrics (fmclient.telemetry); or FMCLIENT_TELEMETRY=1
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fmclient._checks import check_number, max_threads
from fmclient.budget import check_budget_table
from fmclient.cache import check_cache_table
from fmclient.circuit import breaker_from_settings
from fmclient.errors import ConfigurationError
from fmclient.limits import RateLimit, parse_rate_limits
from fmclient.providers import BUILTIN, ProviderSettings, known_types
from fmclient.secret import SDK_CREDENTIAL_ENV, Secret

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Settings", "Target", "alias_env_name", "load_settings", "user_config_path"]

DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "defaults.toml")

TOP_LEVEL_KEYS = frozenset(
    {
        "default_model",
        "default_embedding_model",
        "default_image_model",
        "max_retries",
        "timeout",
        "max_retry_wait",
        "aliases",
        "providers",
        "fallbacks",
        "fallback_on",
        "circuit_breaker",
        "budget",
        "prices",
        "cache",
        "rate_limits",
        "shared",
        "telemetry",
    }
)
PROVIDER_KEYS = frozenset(
    {"type", "api_key", "api_key_env", "base_url", "timeout", "max_retries", "region", "profile", "options"}
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a model name leads: the named provider and the provider's own model id."""

    provider: str
    model: str
    requested: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


# Aliases fmclient shipped and removed because their model's family was shut down, with what to
# use instead. A config that still names one is refused before any request, saying so: repointing
# the alias at another family would silently change the API, the options it takes and the bill.
# A config that defines the alias itself keeps its own meaning.
REMOVED_ALIASES: Mapping[str, str] = {
    "imagen": (
        "Google shut down every Imagen model (Gemini API and Vertex AI); use 'gemini-image' "
        "(gemini/gemini-3.1-flash-image, which makes images through generateContent: the size is an aspect "
        "ratio or a WIDTHxHEIGHT it picks the resolution from, one request per image, no negative prompt)"
    ),
}


@dataclass(frozen=True)
class Settings:
    default_model: str
    default_embedding_model: str
    aliases: Mapping[str, str]
    providers: Mapping[str, ProviderSettings]
    max_retries: int = 2
    timeout: float | None = None
    max_retry_wait: float = 60.0
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fallback_on: frozenset[str] = frozenset()
    circuit_breaker: Mapping[str, Any] = field(default_factory=dict)
    budget: Mapping[str, Any] = field(default_factory=dict)
    prices: Mapping[str, str] = field(default_factory=dict)
    cache: Mapping[str, Any] = field(default_factory=dict)
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    #: ``[shared]``: rate limits, budget and breakers shared over Redis (see fmclient.shared)
    shared: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    default_image_model: str = "titan-image"
    telemetry: bool = False
    config_path: Path | None = None

    def resolve(self, name: str) -> Target:
        """Alias, ``provider/model-id``, or a maker's bare model id (``gpt-4o``: the provider is
        its maker's API, from the profile table) -> :class:`Target`; unknown names raise at once."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"model must be a non-empty string, got {name!r}")
        seen: list[str] = []
        current = name.strip()
        removed = REMOVED_ALIASES.get(current)
        if removed is not None and current not in self.aliases:
            raise ConfigurationError(f"the alias {current!r} was removed: {removed}")
        while current in self.aliases:
            if current in seen:
                raise ConfigurationError(f"alias loop: {' -> '.join([*seen, current])}")
            seen.append(current)
            current = self.aliases[current]
        provider, sep, model = current.partition("/")
        native: str | None = None
        if not sep:
            from fmclient.profiles import native_provider

            # A maker's own model id (gpt-4o, claude-sonnet-4-5, gemini-2.5-flash): its own API.
            native = native_provider(current)
            if native is not None and not _looks_like_alias_typo(current, self.aliases):
                if _known_bare_id(native, current):
                    return Target(provider=native, model=current, requested=name)
            else:
                native = None
        if not sep or not model:
            import difflib  # only to suggest a fix for a typo

            close = difflib.get_close_matches(current, list(self.aliases), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            if native is not None:
                hint += (
                    f"; {current!r} looks like an {native} model id, but neither the installed {native} SDK "
                    f"nor the profile table knows it: if it is newer than they are, name it '{native}/{current}'"
                )
            raise ConfigurationError(
                f"unknown model or alias {name!r}: name a model as 'provider/model-id', by its maker's own "
                f"id (gpt-..., claude-..., gemini-...), or use an alias ({', '.join(sorted(self.aliases))}){hint}"
            )
        if provider not in self.providers and provider not in known_types():
            raise ConfigurationError(
                f"unknown provider {provider!r} in model {name!r}; known providers: "
                f"{', '.join(sorted({*self.providers, *known_types()}))}"
            )
        return Target(provider=provider, model=model, requested=name)

    def provider_settings(self, name: str) -> ProviderSettings:
        found = self.providers.get(name)
        if found is not None:
            return found
        return ProviderSettings(name=name, type=name)

    def max_retries_for(self, provider: str) -> int:
        configured = self.provider_settings(provider).max_retries
        return self.max_retries if configured is None else configured

    def timeout_for(self, provider: str) -> float | None:
        configured = self.provider_settings(provider).timeout
        return self.timeout if configured is None else configured

    def __repr__(self) -> str:
        # ProviderSettings hold Secret keys, whose repr is redacted; nothing else is secret.
        return (
            f"Settings(default_model={self.default_model!r}, providers={sorted(self.providers)!r}, "
            f"max_retries={self.max_retries!r}, timeout={self.timeout!r}, "
            f"config_path={str(self.config_path) if self.config_path else None!r})"
        )


def _known_bare_id(provider: str, model: str) -> bool:
    """A bare id is taken as the maker's only when it is known to be one: listed by the installed
    SDK (openai, anthropic) or in the retirement table, or matched by a profile family of its own
    (not a catch-all such as "gpt" or "claude"). Makers whose SDK lists no models (Gemini, Mistral)
    are taken by their id's shape. So ``gpt-5o-typo`` is an error before sending, not a 404 after."""
    from fmclient.deprecations import deprecation, known_models
    from fmclient.profiles import has_own_family

    listed = known_models(provider)
    if listed is None:
        return True
    return model in listed or deprecation(provider, model) is not None or has_own_family(model)


def _looks_like_alias_typo(name: str, aliases: Mapping[str, str]) -> bool:
    """``claude-sonet``: a misspelt alias, not a model id (every model id of the makers whose bare
    ids resolve has a version number in it, or a suffix such as ``-latest`` that sets it apart)."""
    if any(c.isdigit() for c in name):
        return False
    import difflib

    return bool(difflib.get_close_matches(name, list(aliases), n=1, cutoff=0.85))


def alias_env_name(alias: str) -> str:
    """``claude-sonnet`` -> ``FMCLIENT_ALIAS_CLAUDE_SONNET``."""
    return "FMCLIENT_ALIAS_" + alias.upper().replace("-", "_").replace(".", "_")


def user_config_path() -> Path:
    from pathlib import Path

    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "fmclient" / "config.toml"


def find_config_file(env: Mapping[str, str]) -> Path | None:
    from pathlib import Path

    explicit = env.get("FMCLIENT_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"FMCLIENT_CONFIG points to {path}, which is not a file")
        return path
    for candidate in (Path.cwd() / "fmclient.toml", user_config_path()):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported here, not at the top: settings are read when a Client is built, and
    # `import fmclient` should not pay for a TOML parser it may never use.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from exc


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _switch(value: Any, what: str) -> bool:
    """A boolean setting: true/false in a file, or 1/0, true/false, yes/no, on/off in a variable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{what} must be true or false (1/0, yes/no, on/off), got {value!r}")


def _provider_from_table(name: str, table: Any, where: str, base: ProviderSettings | None) -> ProviderSettings:
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: [providers.{name}] must be a table")
    extra_options = table.get("options") or {}
    if not isinstance(extra_options, Mapping):
        raise ConfigurationError(f"{where}: providers.{name}.options must be a table")
    options = dict(base.options) if base else {}
    options.update(extra_options)
    generic: dict[str, Any] = {}
    for key, value in table.items():
        if key == "options":
            continue
        if key in PROVIDER_KEYS:
            generic[key] = value
        else:
            # Adapter-specific settings (Vertex project, Bedrock worker count, GGUF path...):
            # the adapter validates them when it is built, still before any request.
            options[key] = value
    type_name = generic.get("type") or (base.type if base else name)
    if not isinstance(type_name, str):
        raise ConfigurationError(f"{where}: providers.{name}.type must be a string")
    if type_name not in BUILTIN and type_name not in known_types():
        raise ConfigurationError(
            f"{where}: providers.{name}.type {type_name!r} is not a known adapter type ({', '.join(known_types())})"
        )
    if where != "default":
        _check_adapter_settings(name, type_name, [*options.keys() - (base.options if base else {}).keys()], where)
    for key in ("api_key_env", "base_url", "region", "profile"):
        if key in generic and not isinstance(generic[key], str):
            raise ConfigurationError(f"{where}: providers.{name}.{key} must be a string")
    api_key = generic.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigurationError(f"{where}: providers.{name}.api_key must be a string")

    def pick(key: str) -> Any:
        return generic[key] if key in generic else (getattr(base, key) if base else None)

    return ProviderSettings(
        name=name,
        type=type_name,
        api_key=Secret(api_key) if api_key is not None else (base.api_key if base else None),
        api_key_env=pick("api_key_env"),
        base_url=pick("base_url"),
        timeout=check_number(pick("timeout"), f"{where}: providers.{name}.timeout", allow_none=True, positive=True),
        max_retries=check_number(
            pick("max_retries"), f"{where}: providers.{name}.max_retries", integer=True, allow_none=True
        ),
        region=pick("region"),
        profile=pick("profile"),
        options=options,
    )


def _check_adapter_settings(name: str, type_name: str, keys: list[str], where: str) -> None:
    """Refuse, now, a provider setting neither fmclient nor the adapter knows (``max_retires``),
    with the closest known name. The adapter's module is imported for its list; its SDK is not."""
    if not keys:
        return
    from fmclient.providers import adapter_class

    accepted = adapter_class(type_name).option_keys
    unknown = sorted(key for key in keys if key not in accepted)
    if not unknown:
        return
    import difflib  # only to suggest a fix for a typo

    known = sorted({*PROVIDER_KEYS, *accepted})
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise ConfigurationError(
        f"{where}: unknown setting {', '.join(hints)} in [providers.{name}] (type {type_name!r}); "
        f"known settings: {', '.join(known)}"
    )


def _apply_layer(state: dict[str, Any], data: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        import difflib  # only to suggest a fix for a typo

        close = [m for key in unknown for m in difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ConfigurationError(
            f"{where}: unknown setting {', '.join(map(repr, unknown))}{hint}; "
            f"known settings: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    sources: dict[str, str] = state["sources"]
    for key in ("default_model", "default_embedding_model", "default_image_model"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise ConfigurationError(f"{where}: {key} must be a non-empty string")
            state[key] = data[key]
            sources[key] = where
    if "max_retries" in data:
        state["max_retries"] = check_number(data["max_retries"], f"{where}: max_retries", integer=True)
        sources["max_retries"] = where
    for key in ("timeout", "max_retry_wait"):
        if key in data:
            state[key] = check_number(data[key], f"{where}: {key}", positive=key == "timeout")
            sources[key] = where
    aliases = data.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise ConfigurationError(f"{where}: [aliases] must be a table")
    for alias, target in aliases.items():
        if not isinstance(target, str) or not target:
            raise ConfigurationError(f"{where}: alias {alias!r} must map to a model name string")
        state["aliases"][alias] = target
        sources[f"aliases.{alias}"] = where
    providers = data.get("providers", {})
    if not isinstance(providers, Mapping):
        raise ConfigurationError(f"{where}: [providers] must be a table")
    for name, table in providers.items():
        state["providers"][name] = _provider_from_table(name, table, where, state["providers"].get(name))
        sources[f"providers.{name}"] = where
    fallbacks = data.get("fallbacks", {})
    if not isinstance(fallbacks, Mapping):
        raise ConfigurationError(f"{where}: [fallbacks] must be a table")
    for model, chain in fallbacks.items():
        if not isinstance(chain, (list, tuple)) or not all(isinstance(m, str) and m for m in chain):
            raise ConfigurationError(f"{where}: fallbacks.{model} must be a list of model names")
        state["fallbacks"][model] = tuple(chain)
        sources[f"fallbacks.{model}"] = where
    if "fallback_on" in data:
        value = data["fallback_on"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f"{where}: fallback_on must be a list of error class names")
        state["fallback_on"] = frozenset(value)
        sources["fallback_on"] = where
    if "circuit_breaker" in data:
        value = data["circuit_breaker"]
        if not isinstance(value, dict):
            raise ConfigurationError(f"{where}: [circuit_breaker] must be a table")
        breaker_from_settings(value)  # validate now, not on the first call
        state["circuit_breaker"] = dict(value)
        sources["circuit_breaker"] = where
    if "telemetry" in data:
        state["telemetry"] = _switch(data["telemetry"], f"{where}: telemetry")
        sources["telemetry"] = where
    if "budget" in data:
        # Merged: max_cost= as an argument keeps the config file's budget name and period.
        state["budget"] = {**state["budget"], **check_budget_table(data["budget"], where)}
        sources["budget"] = where
    if "cache" in data:
        state["cache"] = check_cache_table(data["cache"], where)
        sources["cache"] = where
    if "shared" in data:
        from fmclient.shared import check_shared_table  # redis itself is imported only when used

        state["shared"] = {**state["shared"], **check_shared_table(data["shared"], where)}
        sources["shared"] = where
    prices = data.get("prices", {})
    if not isinstance(prices, Mapping) or not all(isinstance(v, str) and v for v in prices.values()):
        raise ConfigurationError(f"{where}: [prices] must map provider names to price table provider ids")
    state["prices"].update(prices)
    if "rate_limits" in data:
        for key, limit in parse_rate_limits(data["rate_limits"], where).items():
            state["rate_limits"][key] = limit
            sources[f"rate_limits.{key}"] = where


# FMCLIENT_* variables and the settings they set; numbers are checked here, so an error names
# the variable, by the same rule as the setting in a file or an argument (see fmclient._checks.check_number).
_ENV_SETTINGS = (
    ("FMCLIENT_MODEL", "default_model"),
    ("FMCLIENT_EMBEDDING_MODEL", "default_embedding_model"),
    ("FMCLIENT_IMAGE_MODEL", "default_image_model"),
    ("FMCLIENT_MAX_RETRIES", "max_retries"),
    ("FMCLIENT_TIMEOUT", "timeout"),
    ("FMCLIENT_MAX_RETRY_WAIT", "max_retry_wait"),
    ("FMCLIENT_TELEMETRY", "telemetry"),
)


def _env_layer(env: Mapping[str, str], aliases: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for var, key in _ENV_SETTINGS:
        value = env.get(var)
        if value is None or not value.strip():
            continue  # empty is unset, as for every variable fmclient reads
        if key == "telemetry":
            data[key] = _switch(value, f"environment variable {var}")
        elif key in ("max_retries", "timeout", "max_retry_wait"):
            data[key] = check_number(
                value, f"environment variable {var}", integer=key == "max_retries", positive=key == "timeout"
            )
        else:
            data[key] = value.strip()
    max_threads(env)  # checked now, with the rest, though the thread pool reads it when first needed
    by_env_name = {alias_env_name(a): a for a in aliases}
    env_aliases = {}
    for var, value in env.items():
        if var.startswith("FMCLIENT_ALIAS_") and value:
            alias = by_env_name.get(var) or var[len("FMCLIENT_ALIAS_") :].lower().replace("_", "-")
            env_aliases[alias] = value
    if env_aliases:
        data["aliases"] = env_aliases
    return data


# Credentials a user keeps in the environment for the providers themselves (and that their SDKs
# read on their own). A config file that fmclient merely found in the working directory (a cloned
# repository's, say) must not send them, or any other variable's value, to a host that file chose.
STANDARD_CREDENTIAL_ENV = frozenset(SDK_CREDENTIAL_ENV)
# Adapter types whose SDK attaches credentials from the environment or a credential chain.
_AMBIENT_TYPES = frozenset({"anthropic", "gemini", "bedrock"})
# Settings that choose where requests (and the credentials on them) go: a host, or the bucket a
# provider batch reads and writes with the caller's cloud credentials.
HOST_SETTINGS = ("base_url", "endpoint_url", "batch_s3_uri", "batch_role_arn")


def _guard_key_redirects(
    state: dict[str, Any], data: Mapping[str, Any], path: Path, overrides: Mapping[str, Any]
) -> None:
    """Refuse a working-directory config file that points a credential it does not contain at a
    host it chose.

    Such a file may set a host (``base_url``, ``endpoint_url``, a batch bucket) only for a provider
    that then carries no credential but one written in that file (``api_key``), or none at all (a
    local OpenAI-compatible server, Ollama). ``api_key_env`` does not count as containing a key:
    it names a variable of the user's, whatever its name. Such providers never fall back to the
    standard variables afterwards (``ambient_credentials=False``). The file may also not hand one
    provider's standard variable to another (``[providers.mistral] api_key_env = "OPENAI_API_KEY"``).
    A file named explicitly (``FMCLIENT_CONFIG``, ``config_path``, ``--config``) is trusted.
    """
    import dataclasses

    from fmclient.providers.readiness import READINESS

    overridden = overrides.get("providers") or {}
    for name, table in (data.get("providers") or {}).items():
        if name in overridden:
            continue  # the caller's own arguments replace what the file said
        settings: ProviderSettings = state["providers"][name]
        spec = READINESS.get(settings.type)
        own = set(spec.key_env + spec.other_credential_env) if spec else set()
        if settings.type == "openai" and name != "openai":
            own = set()  # an OpenAI-compatible server: OPENAI_API_KEY is not its key
        if name == "mistral":
            own.add("MISTRAL_API_KEY")  # the built-in Mistral provider's own variable
        key_env = table.get("api_key_env")
        if isinstance(key_env, str) and key_env in STANDARD_CREDENTIAL_ENV and key_env not in own:
            raise ConfigurationError(
                f"config file {path}, found in the working directory, sets providers.{name}.api_key_env = "
                f"{key_env!r}: that would send another provider's key to {name!r}. " + _trust_hint(path, name)
            )
        options = table.get("options") or {}
        chosen = [key for key in HOST_SETTINGS if key in table or key in options]
        if not chosen:
            continue
        if "api_key" not in table:
            carried: str | None = None
            if settings.api_key_env is not None:
                carried = settings.api_key_env
            elif settings.type == "bedrock":
                carried = "the AWS credential chain"
            elif settings.type in _AMBIENT_TYPES or (settings.type == "openai" and name == "openai"):
                carried = " / ".join(spec.key_env + spec.other_credential_env) if spec else "the environment"
            elif settings.type not in BUILTIN:
                carried = "the environment (a plug-in adapter may read any variable)"
            elif settings.api_key is not None:
                carried = "a key set outside this file"
            if carried is not None:
                raise ConfigurationError(
                    f"config file {path}, found in the working directory, sets providers.{name}.{chosen[0]}: "
                    f"that would send the key from {carried} to a host the file chose. " + _trust_hint(path, name)
                )
        state["providers"][name] = dataclasses.replace(settings, ambient_credentials=False)


def _trust_hint(path: Path, name: str) -> str:
    return (
        f"To trust the file, name it explicitly (FMCLIENT_CONFIG={path}, or Client(config_path=...) / "
        f"--config), or move it to {user_config_path()}; or write the key itself in that file "
        f"([providers.{name}] api_key)"
    )


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the effective settings. ``overrides`` are call arguments (highest layer)."""
    env = os.environ if env is None else env
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of environment variables, not {type(env).__name__}")
    if config_path is not None and not isinstance(config_path, (str, os.PathLike)):
        raise TypeError(f"config_path must be a str or os.PathLike, not {type(config_path).__name__}")
    state: dict[str, Any] = {
        "default_model": "llama-local",
        "default_embedding_model": "llama-local",
        "default_image_model": "titan-image",
        "max_retries": 2,
        "timeout": None,
        "max_retry_wait": 60.0,
        "aliases": {},
        "providers": {},
        "fallbacks": {},
        "fallback_on": frozenset(),
        "circuit_breaker": {},
        "budget": {},
        "prices": {},
        "cache": {},
        "rate_limits": {},
        "shared": {},
        "telemetry": False,
        "sources": {},
    }
    from pathlib import Path  # here, not at the top: `import fmclient` need not pay for it

    _apply_layer(state, _read_toml(Path(DEFAULTS_FILE)), "default")

    path = Path(config_path) if config_path is not None else find_config_file(env)
    if path is not None:
        if not path.is_file():
            raise ConfigurationError(f"config file {path} does not exist")
        data = _read_toml(path)
        _apply_layer(state, data, f"config file {path}")
        if config_path is None and not env.get("FMCLIENT_CONFIG") and path == Path.cwd() / "fmclient.toml":
            _guard_key_redirects(state, data, path, overrides or {})

    env_data = _env_layer(env, state["aliases"])
    if env_data:
        _apply_layer(state, env_data, "environment")
        # Name the exact variable in `fmclient config`, not just "environment".
        for var, key in _ENV_SETTINGS:
            if key in env_data:
                state["sources"][key] = f"env {var}"
        for alias in env_data.get("aliases", {}):
            state["sources"][f"aliases.{alias}"] = f"env {alias_env_name(alias)}"

    if overrides:
        _apply_layer(state, {k: v for k, v in overrides.items() if v is not None}, "argument")

    return Settings(
        default_model=state["default_model"],
        default_embedding_model=state["default_embedding_model"],
        default_image_model=state["default_image_model"],
        aliases=dict(state["aliases"]),
        providers=dict(state["providers"]),
        max_retries=state["max_retries"],
        timeout=state["timeout"],
        max_retry_wait=state["max_retry_wait"],
        fallbacks=dict(state["fallbacks"]),
        fallback_on=state["fallback_on"],
        circuit_breaker=dict(state["circuit_breaker"]),
        budget=dict(state["budget"]),
        prices=dict(state["prices"]),
        cache=dict(state["cache"]),
        rate_limits=dict(state["rate_limits"]),
        shared=dict(state["shared"]),
        sources=dict(state["sources"]),
        config_path=path,
        telemetry=state["telemetry"],
    )
