"""Configuration layers, aliases and model resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fmclient import Client, ConfigurationError
from fmclient.config import alias_env_name, load_settings
from tests.fakes import anthropic as fa
from tests.fakes.server import FakeServer

SHIPPED_ALIASES = [
    "claude-sonnet",
    "claude-haiku",
    "claude-opus",
    "gpt-astra",
    "gpt-sol",
    "gpt-luna",
    "gemini-flash",
    "titan-text",
    "titan-embed",
    "llama-local",
    "llama-3",
    "mistral-large",
]


def test_fresh_user_gets_the_embedded_local_model() -> None:
    settings = load_settings(env={})
    target = settings.resolve(settings.default_model)
    assert (target.provider, target.model) == ("llamacpp", "smollm2-135m-instruct")
    assert settings.sources["default_model"] == "default"


@pytest.mark.parametrize("alias", SHIPPED_ALIASES)
def test_every_shipped_alias_resolves_to_a_provider(alias: str) -> None:
    target = load_settings(env={}).resolve(alias)
    assert target.provider in {"anthropic", "openai", "gemini", "bedrock", "llamacpp", "ollama", "mistral"}
    assert target.model and target.requested == alias


def test_mistral_large_goes_to_the_builtin_openai_compatible_provider() -> None:
    settings = load_settings(env={})
    assert settings.resolve("mistral-large").provider == "mistral"
    mistral = settings.provider_settings("mistral")
    assert (mistral.type, mistral.api_key_env) == ("openai", "MISTRAL_API_KEY")
    assert mistral.base_url == "https://api.mistral.ai/v1"


def test_alias_env_var_name() -> None:
    assert alias_env_name("claude-sonnet") == "FMCLIENT_ALIAS_CLAUDE_SONNET"
    assert alias_env_name("gpt-4o-mini") == "FMCLIENT_ALIAS_GPT_4O_MINI"
    assert alias_env_name("gemini-2.5") == "FMCLIENT_ALIAS_GEMINI_2_5"


def test_env_var_repoints_one_alias_and_leaves_the_others() -> None:
    env = {"FMCLIENT_ALIAS_CLAUDE_SONNET": "bedrock/anthropic.claude-sonnet-4-5-v1:0"}
    settings = load_settings(env=env)
    assert str(settings.resolve("claude-sonnet")) == "bedrock/anthropic.claude-sonnet-4-5-v1:0"
    assert settings.resolve("claude-haiku").provider == "anthropic"
    assert settings.sources["aliases.claude-sonnet"] == "env FMCLIENT_ALIAS_CLAUDE_SONNET"


def test_env_alias_for_a_new_name_defines_it() -> None:
    settings = load_settings(env={"FMCLIENT_ALIAS_MY_MODEL": "openai/gpt-4.1"})
    assert str(settings.resolve("my-model")) == "openai/gpt-4.1"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_argument_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'default_model = "gpt-4o"\nmax_retries = 5\ntimeout = 30\n')
    only_file = load_settings(env={"FMCLIENT_CONFIG": str(config)})
    assert (only_file.default_model, only_file.max_retries, only_file.timeout) == ("gpt-4o", 5, 30)
    assert only_file.sources["default_model"] == f"config file {config}"

    env = {"FMCLIENT_CONFIG": str(config), "FMCLIENT_MODEL": "gemini-pro", "FMCLIENT_MAX_RETRIES": "1"}
    with_env = load_settings(env=env)
    assert (with_env.default_model, with_env.max_retries, with_env.timeout) == ("gemini-pro", 1, 30)
    assert with_env.sources["default_model"] == "env FMCLIENT_MODEL"

    with_args = load_settings(env=env, overrides={"default_model": "gpt-luna", "timeout": 5})
    assert (with_args.default_model, with_args.max_retries, with_args.timeout) == ("gpt-luna", 1, 5)
    assert with_args.sources["default_model"] == "argument"


def test_config_file_in_cwd_then_user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "xdg" / "fmclient" / "config.toml"
    user.parent.mkdir(parents=True)
    write(user, 'default_model = "claude-haiku"\n')
    assert load_settings().default_model == "claude-haiku"
    write(tmp_path / "fmclient.toml", 'default_model = "gpt-4o-mini"\n')
    assert load_settings().default_model == "gpt-4o-mini"  # ./fmclient.toml wins over the user dir


def test_config_defines_named_openai_compatible_provider_and_options(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        """
[aliases]
local = "my-vllm/meta-llama/Llama-3.1-8B-Instruct"

[providers.my-vllm]
type = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "VLLM_KEY"
timeout = 12
max_retries = 4

[providers.anthropic]
api_key_env = "WORK_KEY"
""",
    )
    settings = load_settings(config_path=config, env={})
    target = settings.resolve("local")
    assert (target.provider, target.model) == ("my-vllm", "meta-llama/Llama-3.1-8B-Instruct")
    vllm = settings.provider_settings("my-vllm")
    assert (vllm.type, vllm.base_url, vllm.api_key_env, vllm.timeout) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        "VLLM_KEY",
        12,
    )
    assert settings.max_retries_for("my-vllm") == 4
    assert settings.max_retries_for("anthropic") == settings.max_retries
    assert settings.provider_settings("anthropic").api_key_env == "WORK_KEY"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_model = \n", "not valid TOML"),
        ("defualt_model = 'x'\n", "unknown setting 'defualt_model'"),
        ("[providers.x]\ntype = 'nope'\n", "not a known adapter type"),
        ("max_retries = 'many'\n", "max_retries must be an integer"),
        ("max_retries = -1\n", "must not be negative"),
        ("[aliases]\nfoo = 3\n", "alias 'foo' must map"),
        ("[fallbacks]\ngpt-4o = 'claude'\n", "must be a list"),
    ],
)
def test_bad_config_file_is_a_clear_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(config_path=config, env={})


def test_fmclient_config_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="FMCLIENT_CONFIG"):
        load_settings(env={"FMCLIENT_CONFIG": str(tmp_path / "missing.toml")})


# -- one check for a setting, whichever layer sets it ----------------------------------------------
BAD_NUMBERS = [
    ("FMCLIENT_TIMEOUT", "timeout", "soon", "must be a number"),
    ("FMCLIENT_TIMEOUT", "timeout", "nan", "must be a finite number"),
    ("FMCLIENT_TIMEOUT", "timeout", "inf", "must be a finite number"),
    ("FMCLIENT_TIMEOUT", "timeout", "0", "must be greater than 0"),
    ("FMCLIENT_TIMEOUT", "timeout", "-1", "must be greater than 0"),
    ("FMCLIENT_MAX_RETRIES", "max_retries", "2.5", "must be an integer"),
    ("FMCLIENT_MAX_RETRIES", "max_retries", "-1", "must not be negative"),
    ("FMCLIENT_MAX_RETRY_WAIT", "max_retry_wait", "nan", "must be a finite number"),
    ("FMCLIENT_MAX_RETRY_WAIT", "max_retry_wait", "-3", "must not be negative"),
]


@pytest.mark.parametrize(("var", "key", "value", "message"), BAD_NUMBERS)
def test_a_bad_number_is_refused_naming_the_variable(var: str, key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"environment variable {var} {message}"):
        load_settings(env={var: value})


@pytest.mark.parametrize(("var", "key", "value", "message"), BAD_NUMBERS)
def test_a_config_file_gets_the_same_check_naming_the_file_and_key(
    tmp_path: Path, var: str, key: str, value: str, message: str
) -> None:
    literal = value if value.lstrip("-").replace(".", "").isdigit() or value in ("nan", "inf") else f'"{value}"'
    config = write(tmp_path / "c.toml", f"{key} = {literal}\n")
    with pytest.raises(ConfigurationError, match=rf"config file .*c\.toml: {key} {message}"):
        load_settings(config_path=config, env={})


@pytest.mark.parametrize(("value", "message"), [(0, "greater than 0"), (float("nan"), "finite")])
def test_a_provider_timeout_gets_the_same_check(value: float, message: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"providers\.anthropic\.timeout must be .*{message}"):
        load_settings(env={}, overrides={"providers": {"anthropic": {"timeout": value}}})


def test_an_empty_variable_is_unset() -> None:
    settings = load_settings(env={"FMCLIENT_TIMEOUT": "", "FMCLIENT_MAX_RETRIES": " ", "FMCLIENT_MAX_THREADS": ""})
    assert (settings.timeout, settings.max_retries) == (None, 2)


@pytest.mark.parametrize(
    ("value", "message"),
    [("lots", "must be an integer"), ("0", "must be greater than 0"), ("-4", "must be greater than 0")],
)
def test_a_bad_max_threads_fails_client_construction_not_import(value: str, message: str) -> None:
    # In a fresh interpreter: `import fmclient` used to int() the variable and die with a traceback.
    import subprocess
    import sys

    code = (
        "import fmclient\n"
        "try:\n    fmclient.Client()\n"
        "except fmclient.ConfigurationError as error:\n    print('refused:', error)\n"
    )
    env = {**os.environ, "FMCLIENT_MAX_THREADS": value}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"refused: environment variable FMCLIENT_MAX_THREADS {message}" in done.stdout


def test_the_async_thread_pool_reads_max_threads_when_first_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from fmclient.providers import base

    monkeypatch.setattr(base, "_pool", None)
    monkeypatch.setenv("FMCLIENT_MAX_THREADS", "0")
    with pytest.raises(ConfigurationError, match="FMCLIENT_MAX_THREADS must be greater than 0"):
        asyncio.run(base.run_in_thread(lambda: 1))
    monkeypatch.setenv("FMCLIENT_MAX_THREADS", "3")
    assert asyncio.run(base.run_in_thread(lambda: 41 + 1)) == 42
    assert base._pool is not None and base._pool._max_workers == 3
    base._pool.shutdown()


def test_nothing_reads_the_environment_when_a_module_is_imported() -> None:
    import ast

    root = Path(__file__).resolve().parents[1] / "src" / "fmclient"
    found = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for statement in tree.body:  # module level only: function bodies run when called
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            text = ast.unparse(statement)
            if "os.environ" in text or "getenv" in text:
                found.append(f"{path.relative_to(root)}: {text[:80]}")
    assert found == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("claude-sonet", "did you mean 'claude-sonnet'"),
        ("nosuchprovider/model", "unknown provider 'nosuchprovider'"),
        ("", "non-empty"),
        ("anthropic/", "unknown model or alias"),
    ],
)
def test_unknown_model_names_fail_with_a_hint(name: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env={}).resolve(name)


def test_alias_loop_is_detected() -> None:
    settings = load_settings(env={}, overrides={"aliases": {"a": "b", "b": "a"}})
    with pytest.raises(ConfigurationError, match="alias loop"):
        settings.resolve("a")


def test_alias_can_point_to_another_alias() -> None:
    settings = load_settings(env={}, overrides={"aliases": {"work-model": "claude-haiku"}})
    assert settings.resolve("work-model").provider == "anthropic"


def test_unknown_adapter_option_is_rejected_when_the_client_is_built() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting 'colour' in \[providers\.fake\]"):
        Client(providers={"fake": {"type": "mock", "colour": "blue"}})


@pytest.mark.parametrize(
    ("table", "hint"),
    [
        ("[providers.anthropic]\nmax_retires = 5\n", "'max_retires' (did you mean 'max_retries'?)"),
        ('[providers.openai]\nbase_ulr = "http://127.0.0.1:1/v1"\n', "'base_ulr' (did you mean 'base_url'?)"),
        ("[providers.openai.options]\nstream_usgae = false\n", "'stream_usgae' (did you mean 'stream_usage'?)"),
        ('[providers.bedrock]\nendpoint = "http://127.0.0.1:1"\n', "'endpoint'"),
        ("max_retires = 5\n", "'max_retires' (did you mean 'max_retries'?)"),
    ],
)
def test_a_misspelled_setting_is_refused_at_once_with_a_suggestion(tmp_path: Path, table: str, hint: str) -> None:
    config = write(tmp_path / "c.toml", table)
    with pytest.raises(ConfigurationError) as caught:
        Client(config_path=str(config))
    assert hint in str(caught.value) and str(config) in str(caught.value)


def test_fmclient_config_refuses_a_misspelled_provider_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fmclient.cli import main

    config = write(tmp_path / "c.toml", "[providers.anthropic]\nmax_retires = 5\n")
    assert main(["--config", str(config), "config"]) == 1
    out = capsys.readouterr()
    assert "max_retires = 5" not in out.out
    assert "did you mean 'max_retries'?" in out.err and len(out.err.strip().splitlines()) == 1


def test_every_known_adapter_setting_is_accepted() -> None:
    from fmclient.providers import BUILTIN, adapter_class

    for type_name in BUILTIN:
        options = {key: "x" for key in adapter_class(type_name).option_keys}
        settings = load_settings(env={}, overrides={"providers": {f"p-{type_name}": {"type": type_name, **options}}})
        assert dict(settings.providers[f"p-{type_name}"].options) == options


def test_settings_repr_never_shows_a_key() -> None:
    client = Client(providers={"anthropic": {"api_key": "sk-ant-very-secret-value"}})
    text = repr(client.settings) + repr(client.settings.providers) + repr(client)
    assert "very-secret" not in text
    assert "**********" in repr(client.settings.providers["anthropic"].api_key)


# -- a config file found in the working directory cannot redirect a standard key ---------------
REDIRECTS = [
    pytest.param(
        '[providers.anthropic]\nbase_url = "{url}"\n',
        "providers.anthropic.base_url",
        "ANTHROPIC_API_KEY",
        id="anthropic",
    ),
    pytest.param(
        '[providers.openai]\nbase_url = "{url}"\n', "providers.openai.base_url", "OPENAI_API_KEY", id="openai"
    ),
    pytest.param(
        '[providers.gemini]\nbase_url = "{url}"\n', "providers.gemini.base_url", "GEMINI_API_KEY", id="gemini"
    ),
    pytest.param(
        '[providers.mistral]\nbase_url = "{url}"\n', "providers.mistral.base_url", "MISTRAL_API_KEY", id="mistral"
    ),
    pytest.param(
        '[providers.bedrock]\nendpoint_url = "{url}"\n',
        "providers.bedrock.endpoint_url",
        "AWS credential chain",
        id="bedrock",
    ),
    pytest.param(
        '[providers.anthropic]\nbase_url = "{url}"\napi_key_env = "ANTHROPIC_API_KEY"\n',
        "providers.anthropic.base_url",
        "ANTHROPIC_API_KEY",
        id="naming-the-standard-variable-is-not-defining-a-key",
    ),
    pytest.param(
        '[providers.anthropic]\nbase_url = "{url}"\napi_key_env = "WORK_ANTHROPIC_KEY"\n',
        "providers.anthropic.base_url",
        "WORK_ANTHROPIC_KEY",
        id="naming-any-variable-is-not-containing-a-key",
    ),
    pytest.param(
        '[providers.corp]\ntype = "openai"\nbase_url = "{url}"\napi_key_env = "CORP_KEY"\n',
        "providers.corp.base_url",
        "CORP_KEY",
        id="a-compatible-server-with-a-variable-key",
    ),
    pytest.param(
        '[providers.bedrock]\nbatch_s3_uri = "s3://collector-bucket/in/"\n',
        "providers.bedrock.batch_s3_uri",
        "AWS credential chain",
        id="bedrock-batch-bucket",
    ),
    pytest.param(
        '[providers.bedrock.options]\nendpoint_url = "{url}"\n',
        "providers.bedrock.endpoint_url",
        "AWS credential chain",
        id="in-the-options-table",
    ),
    pytest.param(
        '[providers.mistral]\napi_key_env = "OPENAI_API_KEY"\n',
        "providers.mistral.api_key_env = 'OPENAI_API_KEY'",
        "another provider's key",
        id="another-providers-standard-variable",
    ),
]


@pytest.mark.parametrize(("text", "setting", "source"), REDIRECTS)
def test_working_directory_config_cannot_send_a_standard_key_elsewhere(text: str, setting: str, source: str) -> None:
    write(Path.cwd() / "fmclient.toml", text.format(url="https://collector.example"))
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env={"ANTHROPIC_API_KEY": "sk-ant-real-123456"})
    message = str(caught.value)
    assert setting in message and source in message and str(Path.cwd() / "fmclient.toml") in message
    assert "FMCLIENT_CONFIG=" in message and "config_path" in message and "api_key" in message


def test_the_refusal_comes_before_any_request(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-123456")
    write(Path.cwd() / "fmclient.toml", f'[providers.anthropic]\nbase_url = "{fake_server.url}"\n')
    with pytest.raises(ConfigurationError, match=r"providers\.anthropic\.base_url"):
        Client().complete("hi", model="claude-haiku")
    assert fake_server.requests == []


def sent_key(headers: dict[str, str]) -> str | None:
    # anthropic SDK 2.x sends the key as a bearer token; older ones as x-api-key.
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ") or None


def trusted_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> list[Client]:
    """The same file, trusted explicitly: FMCLIENT_CONFIG, config_path, the user config directory."""
    for folder in (tmp_path / "elsewhere", tmp_path / "xdg" / "fmclient"):
        folder.mkdir(parents=True, exist_ok=True)
    outside = write(tmp_path / "elsewhere" / "fmclient.toml", text)
    clients = [Client(config_path=str(outside))]
    monkeypatch.setenv("FMCLIENT_CONFIG", str(outside))
    clients.append(Client())
    monkeypatch.delenv("FMCLIENT_CONFIG")
    write(tmp_path / "xdg" / "fmclient" / "config.toml", text)  # conftest points XDG_CONFIG_HOME here
    clients.append(Client())
    return clients


def test_an_explicitly_chosen_file_may_redirect_the_standard_key(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-123456")
    for client in trusted_ways(tmp_path, monkeypatch, f'[providers.anthropic]\nbase_url = "{fake_server.url}"\n'):
        fake_server.queue(fa.message_reply("ok"))
        with client:
            assert client.complete("hi", model="claude-haiku", max_tokens=5).text == "ok"
    assert [sent_key(r.headers) for r in fake_server.requests] == ["sk-ant-real-123456"] * 3


def test_a_working_directory_file_may_not_send_a_variable_it_names_to_its_host(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The docs' own example variable: the file names it, but the key in it is the user's.
    monkeypatch.setenv("WORK_ANTHROPIC_KEY", "sk-ant-work-123456")
    write(
        Path.cwd() / "fmclient.toml",
        f'[providers.anthropic]\nbase_url = "{fake_server.url}"\napi_key_env = "WORK_ANTHROPIC_KEY"\n',
    )
    with pytest.raises(ConfigurationError, match=r"providers\.anthropic\.base_url.*WORK_ANTHROPIC_KEY"):
        Client().complete("hi", model="claude-haiku", max_tokens=5)
    assert fake_server.requests == []


def test_a_working_directory_file_may_redirect_a_key_it_contains(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-123456")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-ant-token-123456")
    write(
        Path.cwd() / "fmclient.toml",
        f'[providers.anthropic]\nbase_url = "{fake_server.url}"\napi_key = "gateway-key-123456"\n',
    )
    with Client() as client, pytest.raises(ConfigurationError, match="ANTHROPIC_AUTH_TOKEN"):
        client.complete("hi", model="claude-haiku", max_tokens=5)  # the SDK would add the token too
    assert fake_server.requests == []
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN")
    fake_server.queue(fa.message_reply("via gateway"))
    with Client() as client:
        assert client.complete("hi", model="claude-haiku", max_tokens=5).text == "via gateway"
    assert [sent_key(r.headers) for r in fake_server.requests] == ["gateway-key-123456"]


def test_a_working_directory_file_may_name_its_own_providers_variable() -> None:
    write(Path.cwd() / "fmclient.toml", '[providers.anthropic]\napi_key_env = "WORK_ANTHROPIC_KEY"\n')
    assert load_settings(env={}).providers["anthropic"].api_key_env == "WORK_ANTHROPIC_KEY"  # the host is Anthropic's


def test_a_working_directory_ollama_host_never_gets_the_sdks_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ollama SDK adds $OLLAMA_API_KEY to any client without an Authorization header itself.
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-real-123456")
    write(Path.cwd() / "fmclient.toml", '[providers.ollama]\nbase_url = "http://127.0.0.1:9"\n')
    with Client() as client, pytest.raises(ConfigurationError, match="OLLAMA_API_KEY would be sent"):
        client.complete("hi", model="ollama/llama3.2", max_tokens=5)
    monkeypatch.delenv("OLLAMA_API_KEY")
    assert load_settings().providers["ollama"].ambient_credentials is False  # a keyless local server is fine


def test_a_working_directory_file_may_name_a_keyless_local_server(
    fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-real-123456")
    write(Path.cwd() / "fmclient.toml", f'[providers.local]\ntype = "openai"\nbase_url = "{fake_server.url}/v1"\n')
    settings = load_settings()
    assert settings.providers["local"].base_url == f"{fake_server.url}/v1"
    assert settings.providers["local"].resolve_api_key("OPENAI_API_KEY") is None  # never the standard key


@pytest.mark.parametrize("cooldown", [float("nan"), float("inf"), -1])
def test_the_circuit_breaker_cooldown_gets_the_same_finite_check(cooldown: float) -> None:
    with pytest.raises(ConfigurationError, match="cooldown must be a finite, non-negative number"):
        load_settings(env={}, overrides={"circuit_breaker": {"cooldown": cooldown}})
