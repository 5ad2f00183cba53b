"""Whether a provider can take a call, found without importing its SDK.

``fmclient models`` asks this for every alias. Importing the seven provider SDKs to ask would
take seconds, and fails outright for a user who installed one extra; so each adapter type says
here, as data, how its readiness is checked: which package its extra installs (looked up with
``find_spec``, which executes nothing) and where its credentials come from. Only Bedrock loads
code of its SDK (botocore's session, to walk the AWS credential chain); Ollama is asked over
HTTP, with a short timeout, whether its daemon answers.

The adapters' own ``check_ready`` stays the authority before a real call; this is the quick look.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Literal

from fmclient.errors import ConfigurationError
from fmclient.providers.base import ProviderSettings

__all__ = ["READINESS", "Readiness", "ReadinessCheck", "check", "extra_installed", "ollama_host"]

#: How credentials are found: a key (explicit or from environment variables), the AWS chain, a
#: local daemon, a local file, or nothing at all.
ReadinessCheck = Literal["key", "aws", "daemon", "local", "none"]

OLLAMA_DEFAULT_PORT = 11434
OLLAMA_PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Readiness:
    """How to tell, without importing the SDK, whether an adapter type can take a call."""

    #: the importable module the extra installs; its top-level package is looked up first
    module: str | None
    #: the fmclient extra that installs it
    extra: str
    check: ReadinessCheck
    #: environment variables holding the key, in the SDK's order of preference
    key_env: tuple[str, ...] = ()
    #: other credential variables the SDK reads by itself (a token, a profile)
    other_credential_env: tuple[str, ...] = ()
    #: the other variables the SDK reads to decide where it sends and as which account (an
    #: endpoint, an organisation, a project or region): with the two above, they tell two
    #: clients' identities apart (fmclient.cache.provider_identity)
    identity_env: tuple[str, ...] = ()


READINESS: dict[str, Readiness] = {
    "anthropic": Readiness(
        "anthropic",
        "anthropic",
        "key",
        key_env=("ANTHROPIC_API_KEY",),
        other_credential_env=("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"),
        identity_env=("ANTHROPIC_BASE_URL",),
    ),
    "openai": Readiness(
        "openai",
        "openai",
        "key",
        key_env=("OPENAI_API_KEY",),
        identity_env=("OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"),
    ),
    "gemini": Readiness(
        "google.genai",
        "gemini",
        "key",
        key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        identity_env=(
            "GOOGLE_GENAI_USE_VERTEXAI",
            "GOOGLE_CLOUD_PROJECT",
            "GOOGLE_CLOUD_LOCATION",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
    ),
    "bedrock": Readiness(
        "boto3",
        "bedrock",
        "aws",
        identity_env=(
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_BEARER_TOKEN_BEDROCK",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        ),
    ),
    # The ollama SDK sends $OLLAMA_API_KEY (a hosted server's key) itself when given none.
    "ollama": Readiness(
        "ollama", "ollama", "daemon", other_credential_env=("OLLAMA_API_KEY",), identity_env=("OLLAMA_HOST",)
    ),
    "llamacpp": Readiness("llama_cpp", "local", "local"),
    "mock": Readiness(None, "", "none"),
}


def extra_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    ``find_spec("google.genai")`` imports ``google`` and raises when it is absent; the top-level
    package is therefore looked up first, and a failure of either lookup means "not installed".
    """
    top = module.partition(".")[0]
    try:
        if importlib.util.find_spec(top) is None:
            return False
        return top == module or importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check(settings: ProviderSettings, model: str) -> str | None:
    """``None`` when the provider looks ready for ``model``, else what is missing (no secrets)."""
    spec = READINESS[settings.type]
    if spec.module is not None and not extra_installed(spec.module):
        return f'missing extra: pip install "fmclient[{spec.extra}]"'
    try:
        if spec.check == "key":
            return _key_missing(settings, spec)
        if spec.check == "aws":
            return _aws_missing(settings)
        if spec.check == "daemon":
            return _ollama_missing(settings, model)
        if spec.check == "local":
            from fmclient.providers.llamacpp import resolve_model_path  # no SDK import at module level

            resolve_model_path(model, settings.options, provider=settings.name)
    except ConfigurationError as error:
        return error.message
    return None


def _key_missing(settings: ProviderSettings, spec: Readiness) -> str | None:
    if settings.type == "gemini" and _gemini_on_vertex(settings):
        return None  # Application Default Credentials: the SDK resolves them on the first call
    # A named OpenAI-compatible server (a base_url of its own) never gets $OPENAI_API_KEY and
    # runs without a key unless api_key_env names one.
    standard = spec.key_env if not _compatible_server(settings) else ()
    if settings.resolve_api_key(*standard) is not None:
        return None
    if _compatible_server(settings) and not settings.api_key_env:
        return None
    if settings.type == "anthropic" and (
        settings.profile or any(os.environ.get(var) for var in spec.other_credential_env)
    ):
        return None
    return f"no API key: set {settings.key_sources(*standard)}"


def _compatible_server(settings: ProviderSettings) -> bool:
    return settings.type == "openai" and settings.name != "openai" and settings.base_url is not None


def _gemini_on_vertex(settings: ProviderSettings) -> bool:
    configured = settings.options.get("vertexai")
    if configured is not None:
        return configured is True or str(configured).lower() in ("1", "true", "yes", "on")  # as the adapter reads it
    for var in ("GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI"):
        value = os.environ.get(var)
        if value is not None:
            return value.lower() in ("true", "1")
    return False


def _aws_missing(settings: ProviderSettings) -> str | None:
    """Walk the AWS credential chain with botocore (not boto3): region, then credentials."""
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=settings.profile)
        region = settings.region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
        if not region:
            return f'no AWS region: set AWS_REGION or region = "..." in [providers.{settings.name}]'
        if os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
            return None
        if session.get_credentials() is None:
            return "no AWS credentials: configure the AWS credential chain or set AWS_BEARER_TOKEN_BEDROCK"
    except botocore.exceptions.ProfileNotFound:
        return f"AWS profile {settings.profile!r} is not in the AWS config files"
    except botocore.exceptions.BotoCoreError as error:
        return f"could not load AWS credentials: {type(error).__name__}"
    return None


def ollama_host(settings: ProviderSettings) -> str:
    """The daemon's base URL as the ollama SDK derives it: base_url, else $OLLAMA_HOST."""
    from urllib.parse import urlsplit

    raw = (settings.base_url or os.environ.get("OLLAMA_HOST") or "").strip()
    scheme, sep, rest = raw.partition("://")
    port = OLLAMA_DEFAULT_PORT
    if not sep:
        scheme, rest = "http", raw
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    parts = urlsplit(f"{scheme}://{rest}")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = parts.path.strip("/")
    return f"{scheme}://{host}:{parts.port or port}" + (f"/{path}" if path else "")


def _ollama_missing(settings: ProviderSettings, model: str) -> str | None:
    """Ask the daemon for its model list, with a short timeout; name the host that was tried."""
    import json
    import urllib.error
    import urllib.request

    host = ollama_host(settings)
    try:
        with urllib.request.urlopen(f"{host}/api/tags", timeout=OLLAMA_PROBE_TIMEOUT) as response:
            listing = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return f"Ollama at {host} answered HTTP {error.code}"
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return f"no Ollama server at {host} ({reason}): start it with `ollama serve`"
    names = {str(m.get("name", "")) for m in listing.get("models", []) if isinstance(m, dict)}
    wanted = model if ":" in model else f"{model}:latest"
    if model not in names and wanted not in names:
        return f"model {model!r} is not pulled on {host}: ollama pull {model}"
    return None
