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
        GOOD_OPENAI + 'region_x = "eu"\n',
        r"unknown setting 'region_x' \(did you mean 'region'\?\) in \[providers.openai\]",
        id="unknown-provider-key",
    ),
    pytest.param('max_retries = "two"\n', "max_retries must be an integer", id="max-retries-str"),
    pytest.param("timeout = -5\n", "timeout must be greater than 0", id="timeout-negative"),
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
    with pytest.raises(
        ConfigurationError, match="environment variable FMCLIENT_MAX_RETRIES must be an integer, got 'lots'"
    ):
        Client()


# -- a URL field is never a path (issue 19, item 17) --------------------------------------------------
# A server that forwards its users' messages must not let them read (and upload) its files, nor learn
# which files exist: a string in a URL field that is not http(s), a data URI or gs:// / s3:// is refused
# with zero requests and the same message whether the file is there or not.
def _url_field_parts(value: str) -> list[dict[str, Any]]:
    return [
        {"type": "image", "image": value},
        {"type": "image", "url": value},
        {"type": "image", "source": value},
        {"type": "image", "data": value},
        {"type": "image_url", "image_url": {"url": value}},
        {"type": "image_url", "image_url": value},
    ]


@pytest.mark.parametrize("shape", range(len(_url_field_parts(""))))
@pytest.mark.parametrize("spelling", ["{}", "file://{}"])
@pytest.mark.parametrize("entry", ["Client.complete", "Client.astream"])
def test_a_path_in_a_url_field_is_refused_the_same_whether_the_file_exists(
    wire: FakeServer, tmp_path: Path, shape: int, spelling: str, entry: str
) -> None:
    from tests.fakes.images import small_png

    existing = tmp_path / "secret.png"
    existing.write_bytes(small_png())
    messages = []
    for path in (existing, tmp_path / "missing.png"):
        part = _url_field_parts(spelling.format(path))[shape]
        with pytest.raises(ValueError, match="an image URL must be") as caught:
            CHAT_ENTRY_POINTS[entry]([{"role": "user", "content": ["Describe it.", part]}], model=MODEL)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "secret" not in messages[0] and "missing" not in messages[0]


def test_imagepart_builders_never_read_a_str_as_a_path(tmp_path: Path) -> None:
    from fmclient import ImagePart
    from tests.fakes.images import small_png

    existing = tmp_path / "secret.png"
    existing.write_bytes(small_png())
    for build in (ImagePart.from_source, ImagePart.from_url, lambda v: ImagePart(url=v)):
        outcomes = []
        for value in (str(existing), str(tmp_path / "missing.png"), f"file://{existing}"):
            with pytest.raises(ValueError) as caught:
                build(value)
            outcomes.append(str(caught.value))
        assert len(set(outcomes)) == 1
    # Fields meant for paths still read files: a pathlib.Path, ImagePart.from_path, {"path": ...}.
    assert ImagePart.from_source(existing).data == small_png()
    assert ImagePart.from_path(str(existing)).data == small_png()
    assert fmclient.Message.user([{"type": "image", "path": str(existing)}]).content[0].data == small_png()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not found"):  # an explicit path is the caller's own: it may say so
        ImagePart.from_path(tmp_path / "missing.png")


def test_an_image_part_with_two_sources_is_refused(wire: FakeServer) -> None:
    part = {"type": "image", "url": "https://example.com/a.png", "path": "a.png"}
    with pytest.raises(ValueError, match="takes one of"):
        fmclient.complete([{"role": "user", "content": [part]}], model=MODEL)


def test_urls_data_uris_paths_and_storage_uris_still_reach_the_wire(server: FakeServer, tmp_path: Path) -> None:
    import base64

    from tests.fakes.images import small_png
    from tests.fakes.openai import FakeOpenAI

    server.reset()
    FakeOpenAI(server)
    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(small_png())
    data_uri = "data:image/png;base64," + base64.b64encode(small_png()).decode()
    parts = [
        {"type": "image", "image": "https://example.com/cat.png"},
        {"type": "image_url", "image_url": {"url": "http://example.com/dog.jpg"}},
        {"type": "image", "url": data_uri},
        {"type": "image", "image": on_disk},
        {"type": "image", "path": str(on_disk)},
    ]
    config = tmp_path / "empty.toml"
    config.write_text("")
    with Client(config_path=str(config), providers={"openai": {"base_url": server.url + "/v1", "api_key": "k"}}) as c:
        c.complete([{"role": "user", "content": ["Describe them.", *parts]}], model=MODEL)
    (request,) = server.requests
    sent = [p["image_url"]["url"] for p in request.json()["messages"][0]["content"][1:]]
    assert sent == ["https://example.com/cat.png", "http://example.com/dog.jpg", data_uri, data_uri, data_uri]
    assert fmclient.ImagePart.from_source("s3://bucket/cat.png").url == "s3://bucket/cat.png"  # passed, not read
    assert fmclient.ImagePart.from_source("gs://bucket/cat.png").url == "gs://bucket/cat.png"


def test_a_reply_nested_deeper_than_the_stack_is_a_structured_output_error(server: FakeServer, tmp_path: Path) -> None:
    from fmclient import StructuredOutputError
    from tests.fakes.openai import Answer, FakeOpenAI

    server.reset()
    FakeOpenAI(server).answer(Answer("[" * 100_000 + "]" * 100_000))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    config = tmp_path / "empty.toml"
    config.write_text("")
    providers = {"openai": {"base_url": server.url + "/v1", "api_key": "k"}}
    with Client(config_path=str(config), providers=providers) as c, pytest.raises(StructuredOutputError, match="JSON"):
        c.complete("nest", model=MODEL, response_format=schema)


@pytest.mark.parametrize("model", [MODEL, "openai/gpt-5"])  # Chat Completions and the Responses API
def test_a_storage_uri_openai_cannot_fetch_is_refused_unsent(wire: FakeServer, model: str) -> None:
    part = {"type": "image", "image": "s3://bucket/cat.png"}
    with pytest.raises(UnsupportedFeatureError, match="s3://"):
        fmclient.complete([{"role": "user", "content": ["Describe it.", part]}], model=model)


def test_tool_arguments_nested_deeper_than_the_stack_are_a_structured_output_error(
    server: FakeServer, tmp_path: Path
) -> None:
    from fmclient import StructuredOutputError
    from tests.fakes.openai import Answer, FakeOpenAI

    server.reset()
    FakeOpenAI(server).answer(Answer(tool_calls=[("call_1", "lookup", "[" * 100_000 + "]" * 100_000)]))
    tool = {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {}}}
    config = tmp_path / "empty.toml"
    config.write_text("")
    providers = {"openai": {"base_url": server.url + "/v1", "api_key": "k"}}
    with Client(config_path=str(config), providers=providers) as c, pytest.raises(StructuredOutputError, match="JSON"):
        c.complete("nest", model=MODEL, tools=[tool])
