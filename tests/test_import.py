"""`import fmclient` stays light: no provider SDK, no heavy dependency, and only the modules listed
here. A feature that starts importing more on `import fmclient` or on `Client()` fails this file;
if the new import is really needed there, add it to the list on purpose."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "anthropic",
    "openai",
    "google.genai",
    "boto3",
    "botocore",
    "ollama",
    "llama_cpp",
    "pydantic",
    "httpx",
    "httpx2",
    "aiohttp",
    "tenacity",
    "genai_prices",
    "tiktoken",
    "opentelemetry",
    "redis",
    "tqdm",
    "ray",
    "langchain_core",
    "mcp",
    "numpy",
]
# Standard-library modules only a feature in use needs (async calls, sockets, a disk cache,
# money arithmetic, threads pools...): none of them on `import fmclient` or on building a Client.
HEAVY_STDLIB = [
    "asyncio",
    "concurrent.futures",
    "ssl",
    "socket",
    "subprocess",
    "selectors",
    "decimal",
    "sqlite3",
    "email",
    "http",
    "urllib.request",
]

#: every fmclient module `import fmclient` loads
ON_IMPORT = ["fmclient"]
#: every fmclient module that building a Client and reaching its chat methods loads
ON_CLIENT = [
    "fmclient",
    "fmclient._chat",
    "fmclient._checks",
    "fmclient._engine",
    "fmclient._media",
    "fmclient._schema",
    "fmclient._stream",
    "fmclient._validation",
    "fmclient.budget",
    "fmclient.cache",
    "fmclient.circuit",
    "fmclient.client",
    "fmclient.config",
    "fmclient.errors",
    "fmclient.hooks",
    "fmclient.limits",
    "fmclient.pricing",
    "fmclient.profiles",
    "fmclient.profiles._profile",
    "fmclient.providers",
    "fmclient.providers.base",
    "fmclient.providers.shared_io",
    "fmclient.retry",
    "fmclient.secret",
    "fmclient.types",
]


def _loaded_by(code: str) -> list[str]:
    """The modules a fresh interpreter has after ``code`` that it did not have before it."""
    script = f"import sys, json\nbefore = set(sys.modules)\n{code}\nprint(json.dumps(sorted(set(sys.modules) - before)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/")
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(loaded: list[str]) -> list[str]:
    return [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY_STDLIB]


def test_import_fmclient_loads_only_its_own_package_module() -> None:
    loaded = _loaded_by("import fmclient")
    assert [m for m in loaded if m.startswith("fmclient")] == ON_IMPORT
    assert _heavy(loaded) == []


def test_building_a_client_loads_the_listed_modules_and_nothing_heavy() -> None:
    loaded = _loaded_by("from fmclient import Client\nClient().complete")
    assert [m for m in loaded if m.startswith("fmclient")] == ON_CLIENT
    assert _heavy(loaded) == []


def test_import_fmclient_testing_imports_no_provider_sdk() -> None:
    loaded = _loaded_by("import fmclient, fmclient.testing")
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


def test_public_api_names() -> None:
    import fmclient

    for name in fmclient.__all__:
        assert getattr(fmclient, name) is not None, name
        assert name in dir(fmclient)
    assert fmclient.Cost is fmclient.types.Cost
    client = fmclient.Client()
    for method in ("complete", "acomplete", "stream", "astream", "embed", "aembed"):
        assert callable(getattr(client, method))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import fmclient

    try:
        fmclient.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("fmclient.NoSuchThing did not raise")
