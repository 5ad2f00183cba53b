"""Bad input to every public entry point is refused with a clear error, before any request.

Every chat entry point (``Client.complete/acomplete/stream/astream`` and the module-level
``fmclient.complete/acomplete/stream/astream``) is driven with the whole bad-request table of
``tests/test_validation.py`` plus the cases below; every embedding entry point with the bad-texts
table; ``Client(...)`` with bad constructor arguments; and config files with each kind of mistake.
The client is pointed at a real adapter (OpenAI's) on a loopback fake server, so "before any
request" is proven at the wire: the server must have received nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fmclient
from fmclient import Client, ConfigurationError, UnsupportedFeatureError
from tests.fakes.server import FakeServer
from tests.test_validation import BAD_REQUESTS

MODEL = "openai/gpt-4o"
EMBEDDING_MODEL = "openai/text-embedding-3-small"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def wire(server: FakeServer, tmp_path: Path) -> Iterator[FakeServer]:
    """The fake server, empty, and a default client (for the module-level functions) aimed at it."""
    server.reset()
    config = tmp_path / "empty.toml"
    config.write_text("")
    client = Client(
        config_path=str(config),
        providers={"openai": {"base_url": server.url + "/v1", "api_key": "test-key-bad-input"}},
    )
    fmclient.set_default_client(client)
    yield server
    fmclient.set_default_client(None)
    client.close()
    assert server.requests == [], "bad input reached the network"


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# name -> how to call it with (prompt, **kwargs). Streams must refuse when called, not when read:
# the caller learns of bad input before starting to iterate.
CHAT_ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "Client.complete": lambda p, **kw: fmclient.default_client().complete(p, **kw),
    "Client.acomplete": lambda p, **kw: _run(fmclient.default_client().acomplete(p, **kw)),
    "Client.stream": lambda p, **kw: fmclient.default_client().stream(p, **kw),
    "Client.astream": lambda p, **kw: fmclient.default_client().astream(p, **kw),
    "fmclient.complete": lambda p, **kw: fmclient.complete(p, **kw),
    "fmclient.acomplete": lambda p, **kw: _run(fmclient.acomplete(p, **kw)),
    "fmclient.stream": lambda p, **kw: fmclient.stream(p, **kw),
    "fmclient.astream": lambda p, **kw: fmclient.astream(p, **kw),
}
EMBED_ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "Client.embed": lambda t, **kw: fmclient.default_client().embed(t, **kw),
    "Client.aembed": lambda t, **kw: _run(fmclient.default_client().aembed(t, **kw)),
    "fmclient.embed": lambda t, **kw: fmclient.embed(t, **kw),
    "fmclient.aembed": lambda t, **kw: _run(fmclient.aembed(t, **kw)),
}

# On top of tests/test_validation.py's table: the model and call arguments.
MORE_BAD_REQUESTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"prompt": "hi", "model": "gpt-5o-typo"}, ConfigurationError, "unknown model or alias 'gpt-5o-typo'"),
    ({"prompt": "hi", "model": "nope/some-model"}, ConfigurationError, "unknown provider 'nope'"),
    ({"prompt": "hi", "model": 5}, TypeError, "model must be a str"),
    ({"prompt": "hi", "fallbacks": ["claude-sonet"]}, ConfigurationError, "'claude-sonet'"),
    ({"prompt": "hi", "max_retries": -1}, ValueError, "max_retries must not be negative"),
    ({"prompt": "hi", "max_retries": "3"}, TypeError, "max_retries must be an int"),
    ({"prompt": "hi", "timeout": 0}, ValueError, "timeout must be positive"),
    ({"prompt": "hi", "timeout": "10"}, TypeError, "timeout must be a number"),
    ({"prompt": [5]}, TypeError, r"messages\[0\]"),
    ({"prompt": "hi", "model": "openai/o3", "temperature": 0.5}, UnsupportedFeatureError, "temperature"),
    (
        {"prompt": [{"role": "user", "content": [{"type": "image", "image": "data:image/png;base64,@@@"}]}]},
        ValueError,
        "base64",
    ),
]

CHAT_CELLS = [
    pytest.param(entry, kwargs, error, message, id=f"{entry}-{index}")
    for entry in CHAT_ENTRY_POINTS
    for index, (kwargs, error, message) in enumerate(BAD_REQUESTS + MORE_BAD_REQUESTS)
]


@pytest.mark.parametrize(("entry", "kwargs", "error", "message"), CHAT_CELLS)
def test_every_chat_entry_point_refuses_bad_input_before_sending(
    wire: FakeServer, entry: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments = {"model": MODEL, **kwargs}
    prompt = arguments.pop("prompt")
    with pytest.raises(error, match=message):
        CHAT_ENTRY_POINTS[entry](prompt, **arguments)


def test_the_chat_table_is_wired_to_a_server_that_would_answer(wire: FakeServer) -> None:
    """Control: the same entry points with good input do reach the server."""
    from tests.fakes.openai import FakeOpenAI

    FakeOpenAI(wire)
    for name, entry in CHAT_ENTRY_POINTS.items():
        result = entry("hi", model=MODEL)
        if "stream" in name:
            if name.endswith("astream"):

                async def drain(stream: Any = result) -> None:
                    async for _ in stream:
                        pass

                _run(drain())
            else:
                list(result)
    assert len(wire.requests) == len(CHAT_ENTRY_POINTS)
    wire.reset()  # the fixture's "nothing reached the network" check is for the bad cells


BAD_TEXTS: list[tuple[Any, type[Exception], str]] = [
    ([], ValueError, "texts must not be empty"),
    ([""], ValueError, r"texts\[0\]"),
    (["ok", "  "], ValueError, r"texts\[1\]"),
    ([1], TypeError, r"texts\[0\] must be a str"),
    (5, TypeError, "texts must be"),
    (None, TypeError, "texts must be"),
]
BAD_EMBED_CALLS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"model": "text-embedding-9-typo"}, ConfigurationError, "unknown model or alias"),
    ({"model": MODEL}, UnsupportedFeatureError, "does not make embeddings"),
    ({"max_retries": -1}, ValueError, "max_retries must not be negative"),
    ({"timeout": -1}, ValueError, "timeout must be positive"),
]
EMBED_CELLS = [
    pytest.param(entry, texts, {}, error, message, id=f"{entry}-texts-{index}")
    for entry in EMBED_ENTRY_POINTS
    for index, (texts, error, message) in enumerate(BAD_TEXTS)
] + [
    pytest.param(entry, ["fine"], kwargs, error, message, id=f"{entry}-call-{index}")
    for entry in EMBED_ENTRY_POINTS
    for index, (kwargs, error, message) in enumerate(BAD_EMBED_CALLS)
]


@pytest.mark.parametrize(("entry", "texts", "kwargs", "error", "message"), EMBED_CELLS)
def test_every_embed_entry_point_refuses_bad_input_before_sending(
    wire: FakeServer, entry: str, texts: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EMBED_ENTRY_POINTS[entry](texts, **{"model": EMBEDDING_MODEL, **kwargs})


# -- Client(...) -------------------------------------------------------------------------------------


CONSTRUCTOR_CELLS = [
    pytest.param({"model": 5}, ConfigurationError, "default_model must be a non-empty string", id="model-int"),
    pytest.param({"model": ""}, ConfigurationError, "default_model must be a non-empty string", id="model-empty"),
    pytest.param({"embedding_model": 3}, ConfigurationError, "default_embedding_model", id="embedding-model-int"),
    pytest.param({"config_path": "/no/such/fmclient.toml"}, ConfigurationError, "does not exist", id="config-missing"),
    pytest.param({"max_retries": -1}, ValueError, "max_retries must not be negative", id="max-retries-negative"),
    pytest.param({"max_retries": 1.5}, TypeError, "max_retries must be an int", id="max-retries-float"),
    pytest.param({"max_retries": True}, TypeError, "max_retries must be an int", id="max-retries-bool"),
    pytest.param({"timeout": 0}, ValueError, "timeout must be positive", id="timeout-zero"),
    pytest.param({"timeout": float("nan")}, ValueError, "timeout must be positive", id="timeout-nan"),
    pytest.param({"timeout": "5"}, TypeError, "timeout must be a number", id="timeout-str"),
    pytest.param({"max_retry_wait": -1}, ConfigurationError, "max_retry_wait must not be negative", id="wait-negative"),
    pytest.param({"max_retry_wait": "x"}, ConfigurationError, "max_retry_wait must be a number", id="wait-str"),
    pytest.param(
        {"providers": {"openai": {"base_url": 5}}}, ConfigurationError, "base_url must be a string", id="base-url-int"
    ),
    pytest.param(
        {"providers": {"corp": {"type": "openia"}}},
        ConfigurationError,
        "'openia' is not a known adapter type",
        id="provider-type",
    ),
    pytest.param({"aliases": {"fast": 5}}, ConfigurationError, "alias 'fast' must map to a model name", id="alias-int"),
    pytest.param(
        {"fallbacks": {"gpt-4o": [5]}}, ConfigurationError, "fallbacks.gpt-4o must be a list", id="fallback-int"
    ),
    pytest.param(
        {"config_path": 5},
        TypeError,
        "config_path",
        id="config-path-int",
    ),
    pytest.param(
        {"providers": ["openai"]},
        (TypeError, ConfigurationError),
        "providers",
        id="providers-list",
    ),
    pytest.param(
        {"providers": {"openai": "https://api.openai.com"}},
        (TypeError, ConfigurationError),
        "providers.openai",
        id="provider-not-a-table",
    ),
    pytest.param(
        {"aliases": ["fast"]},
        (TypeError, ConfigurationError),
        "aliases",
        id="aliases-list",
    ),
    pytest.param(
        {"fallbacks": ["claude-haiku"]},
        (TypeError, ConfigurationError),
        "fallbacks",
        id="fallbacks-list",
    ),
    pytest.param(
        {"fallbacks": {"gpt-4o": "claude-haiku"}},
        (TypeError, ConfigurationError),
        "fallbacks.gpt-4o must be a list",
        id="fallback-chain-str",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), CONSTRUCTOR_CELLS)
def test_client_constructor_refuses_bad_arguments(
    wire: FakeServer, tmp_path: Path, kwargs: dict[str, Any], error: Any, message: str
) -> None:
    empty = tmp_path / "ctor.toml"
    empty.write_text("")
    arguments = {"config_path": str(empty), **kwargs}
    with pytest.raises(error, match=message):
        # A bad argument fails when the client is built, or at the latest on its first call.
        Client(**arguments).complete("hi", model=MODEL)


# -- config files --------------------------------------------------------------------------------------

GOOD_OPENAI = '[providers.openai]\nbase_url = "{url}/v1"\napi_key = "test-key-bad-input"\n'

CONFIG_CELLS = [
    pytest.param('default_model = "gpt-4o', "is not valid TOML", id="syntax-error"),
    pytest.param('colour = "blue"\n', "unknown setting 'colour'", id="unknown-key"),
    pytest.param(
        GOOD_OPENAI + 'region_x = "eu"\n', "unknown setting 'region_x' for provider 'openai'", id="unknown-provider-key"
    ),
    pytest.param('max_retries = "two"\n', "max_retries must be a number", id="max-retries-str"),
    pytest.param("timeout = -5\n", "timeout must not be negative", id="timeout-negative"),
    pytest.param('default_model = ""\n', "default_model must be a non-empty string", id="default-model-empty"),
    pytest.param("providers = 5\n", r"\[providers\] must be a table", id="providers-not-table"),
    pytest.param("[providers]\nopenai = 5\n", r"\[providers.openai\] must be a table", id="provider-not-table"),
    pytest.param('[providers.corp]\ntype = "openia"\n', "'openia' is not a known adapter type", id="provider-type"),
    pytest.param("[providers.openai]\napi_key = 5\n", "providers.openai.api_key must be a string", id="api-key-int"),
    pytest.param("[providers.openai]\nbase_url = 5\n", "providers.openai.base_url must be a string", id="base-url-int"),
    pytest.param(GOOD_OPENAI + 'max_tokens_param = "tokens"\n', "max_tokens_param must be", id="adapter-option-value"),
    pytest.param("[aliases]\nfast = 5\n", "alias 'fast' must map to a model name", id="alias-int"),
    pytest.param('[aliases]\ngpt-sol = "nope/model"\n', "unknown provider 'nope'", id="alias-unknown-provider"),
    pytest.param('[fallbacks]\ngpt-4o = "claude-haiku"\n', "fallbacks.gpt-4o must be a list", id="fallback-str"),
    pytest.param('fallback_on = "RateLimitError"\n', "fallback_on must be a list", id="fallback-on-str"),
    # Named by its key only: breaker_from_settings validates the table without knowing its file.
    pytest.param("[circuit_breaker]\nfailure_threshold = 0\n", "circuit_breaker.failure_threshold", id="breaker-value"),
    pytest.param(
        "[providers.openai]\noptions = 5\n",
        "providers.openai.options",
        id="options-not-table",
    ),
]


@pytest.mark.parametrize(("text", "message"), CONFIG_CELLS)
def test_config_file_mistakes_are_configuration_errors_naming_the_problem(
    wire: FakeServer, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "fmclient.toml"
    path.write_text(text.format(url=wire.url) if "{url}" in text else text)
    with pytest.raises(ConfigurationError, match=message) as caught:
        Client(config_path=str(path)).complete("hi", model="gpt-sol")
    problem = str(caught.value)
    # Errors found while reading the file say which file; those found when the adapter is built
    # name the provider instead, or the setting (the circuit breaker's).
    assert (
        str(path) in problem or "[openai]" in problem or "unknown provider" in problem or "circuit_breaker." in problem
    )


def test_config_file_from_the_environment_that_does_not_exist(
    wire: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMCLIENT_CONFIG", "/no/such/config.toml")
    with pytest.raises(ConfigurationError, match=r"FMCLIENT_CONFIG points to /no/such/config\.toml"):
        Client()


def test_bad_environment_values(wire: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMCLIENT_MAX_RETRIES", "lots")
    with pytest.raises(ConfigurationError, match="max_retries must be a number, got 'lots'"):
        Client()
