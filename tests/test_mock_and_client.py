"""The Client end to end through the mock provider, used the way an app's test suite would."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import fmclient
from fmclient import (
    AuthenticationError,
    Client,
    Completion,
    ContentFilterError,
    ContextWindowExceededError,
    Message,
    RateLimitError,
    ServiceUnavailableError,
    StructuredOutputError,
    Usage,
)
from fmclient.testing import MockProvider


# -- an "app" as a user would write it ------------------------------------------------------
def summarise(text: str) -> str:
    return fmclient.complete(f"Summarise: {text}", model="claude-sonnet", max_tokens=100).text


def test_app_code_runs_unchanged_under_the_fixture(fmclient_mock: MockProvider) -> None:
    fmclient_mock.add_reply("A cat sat.")
    assert summarise("The cat sat on the mat all day.") == "A cat sat."
    request = fmclient_mock.last_request
    assert request.model == "anthropic/claude-sonnet-5-5"  # where the call would have gone
    assert request.max_tokens == 100
    assert request.messages[0].text == "Summarise: The cat sat on the mat all day."


def test_the_fixture_comes_from_the_pytest11_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("fmclient")


def test_unscripted_calls_get_the_default_reply_with_usage() -> None:
    with MockProvider(default_text="default answer") as mock:
        reply = Client().complete("one two three", model="gemini-flash", system="be nice")
    assert reply.text == "default answer"
    assert (reply.provider, reply.model, reply.finish_reason) == ("mock", "gemini/gemini-3.8-flash", "stop")
    assert reply.usage == Usage(input_tokens=5, output_tokens=2)
    assert reply.usage.total_tokens == 7
    assert reply.message == Message(role="assistant", content="default answer")
    assert mock.last_request.system == "be nice"


def test_responder_builds_replies_from_the_request() -> None:
    with MockProvider() as mock:
        mock.respond_with(lambda request: request.messages[-1].text.upper())
        assert Client().complete("shout", model="gpt-sol").text == "SHOUT"


def test_tool_call_round_trip() -> None:
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"3C in {city}"

    client = Client()
    with MockProvider() as mock:
        mock.add_tool_call("get_weather", {"city": "Oslo"}, id="call_1").add_reply("It is 3C in Oslo.")
        history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
        first = client.complete(history, model="gpt-sol", tools=[get_weather], tool_choice="auto")
        assert first.finish_reason == "tool_calls"
        (call,) = first.tool_calls
        assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Oslo"})
        history += [first.message, Message.tool_result(call.id, get_weather(**call.arguments))]
        second = client.complete(history, model="gpt-sol", tools=[get_weather])
    assert second.text == "It is 3C in Oslo."
    sent = mock.requests[1]
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[2].name == "get_weather"  # filled from the call it answers
    assert sent.tools[0].parameters["properties"] == {"city": {"type": "string"}}


def test_structured_output_with_a_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    with MockProvider() as mock:
        mock.add_reply(json.dumps({"name": "Ada", "age": 36}))
        reply = Client().complete("who?", model="gpt-sol", response_format=schema)
        assert reply.parsed == {"name": "Ada", "age": 36}
        assert mock.last_request.response_format is not None
        mock.add_reply('{"name": "Ada", "age": "old"}')
        with pytest.raises(StructuredOutputError, match=r"\$.age should be integer") as caught:
            Client().complete("who?", model="gpt-sol", response_format=schema)
        assert caught.value.text == '{"name": "Ada", "age": "old"}'
        mock.add_reply("not json at all")
        with pytest.raises(StructuredOutputError, match="not valid JSON"):
            Client().complete("who?", model="gpt-sol", response_format=schema)


def test_structured_output_with_a_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):
        name: str
        age: int

    with MockProvider() as mock:
        mock.add_reply('```json\n{"name": "Ada", "age": 36}\n```')
        reply = Client().complete("who?", model="claude-haiku", response_format=Person)
        assert reply.parsed == Person(name="Ada", age=36)
        assert reply.to_dict()["parsed"] == {"name": "Ada", "age": 36}
        assert mock.last_request.response_format.schema["required"] == ["name", "age"]  # type: ignore[union-attr]
        mock.add_reply('{"name": "Ada"}')
        with pytest.raises(StructuredOutputError, match="does not validate as Person"):
            Client().complete("who?", model="claude-haiku", response_format=Person)


def test_streaming_assembles_the_completion() -> None:
    with MockProvider() as mock:
        mock.add_stream(["The ", "answer ", "is 42."], usage=Usage(10, 3, 4))
        with Client().stream("question", model="gpt-astra") as stream:
            pieces = [chunk.text for chunk in stream]
    assert "".join(pieces) == "The answer is 42."
    assert stream.text == "The answer is 42."
    completion = stream.completion
    assert (completion.text, completion.finish_reason) == ("The answer is 42.", "stop")
    assert completion.usage == Usage(10, 3, 4)
    assert stream.finish_reason == "stop" and stream.usage == Usage(10, 3, 4)


def test_stream_completion_consumes_the_rest() -> None:
    with MockProvider() as mock:
        mock.add_stream(["a", "b", "c"])
        stream = Client().stream("q", model="gpt-astra")
        assert next(stream).text == "a"
        assert stream.completion.text == "abc"


def test_streamed_tool_calls_are_assembled() -> None:
    with MockProvider() as mock:
        mock.add_tool_call("lookup", {"id": 7})
        stream = fmclient.stream("find 7", model="gpt-sol", tools=[{"name": "lookup"}])
        list(stream)
    assert stream.completion.tool_calls[0].arguments == {"id": 7}
    assert stream.completion.finish_reason == "tool_calls"


def test_max_tokens_truncation_reports_length() -> None:
    with MockProvider(default_text="one two three four five") as mock:
        reply = Client().complete("count", model="gpt-sol", max_tokens=2)
    assert (reply.text, reply.finish_reason) == ("one two", "length")
    assert mock.calls[0].kind == "complete"


def test_embeddings_keep_order_and_are_deterministic() -> None:
    with MockProvider() as mock:
        first = fmclient.embed(["alpha", "beta", "gamma"], model="titan-embed")
        again = Client().embed(["gamma"], model="titan-embed")
        mock.add_embeddings([[1.0, 0.0], [0.0, 1.0]])
        scripted = Client().embed(["x", "y"], model="titan-embed")
    assert len(first) == 3 and first[2] == again[0]
    assert first[0] != first[1]
    assert scripted.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert first.model == "bedrock/amazon.titan-embed-text-v2:0"
    assert mock.embed_requests[0].texts == ("alpha", "beta", "gamma")


async def test_async_twins() -> None:
    with MockProvider() as mock:
        mock.add_reply("async").add_embeddings([[0.5]])
        assert (await fmclient.acomplete("hi", model="gpt-sol")).text == "async"
        assert (await fmclient.aembed("hi", model="titan-embed")).vectors == [[0.5]]
        stream = fmclient.astream("hi", model="gpt-sol")
        assert "".join([c.text async for c in stream]) == "mock response"


def test_module_shortcuts_use_one_lazily_built_default_client() -> None:
    fmclient.set_default_client(None)
    first = fmclient.default_client()
    assert fmclient.default_client() is first
    custom = Client(model="gpt-sol")
    fmclient.set_default_client(custom)
    try:
        with MockProvider() as mock:
            fmclient.complete("hi")
        assert mock.last_request.model == "openai/gpt-6.2-sol"
    finally:
        fmclient.set_default_client(None)


def test_default_model_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMCLIENT_MODEL", "gemini-flash")
    with MockProvider() as mock:
        Client().complete("hi")
    assert mock.last_request.model == "gemini/gemini-3.8-flash"


def test_switching_provider_by_env_var_needs_no_code_change(monkeypatch: pytest.MonkeyPatch) -> None:
    with MockProvider() as mock:
        summarise_with = Client()
        summarise_with.complete("x", model="claude-sonnet")
        monkeypatch.setenv("FMCLIENT_ALIAS_CLAUDE_SONNET", "bedrock/anthropic.claude-sonnet-4-5-v1:0")
        Client().complete("x", model="claude-sonnet")
    assert [r.model for r in mock.requests] == [
        "anthropic/claude-sonnet-5-5",
        "bedrock/anthropic.claude-sonnet-4-5-v1:0",
    ]


def test_errors_from_the_mock_carry_provider_model_and_flags() -> None:
    with MockProvider() as mock:
        mock.add_error(AuthenticationError, message="bad key")
        with pytest.raises(AuthenticationError) as caught:
            Client().complete("hi", model="claude-haiku")
    error = caught.value
    assert (error.provider, error.model, error.retryable) == ("mock", "anthropic/claude-haiku-5-5", False)
    assert isinstance(error, fmclient.FMClientError)


def test_mock_is_thread_safe_and_visible_from_threads() -> None:
    results: list[str] = []
    client = Client()
    with MockProvider(default_text="t") as mock:
        threads = [
            threading.Thread(target=lambda: results.append(client.complete("hi", model="gpt-sol").text))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["t"] * 8
    assert len(mock.calls) == 8


def test_mock_exits_cleanly() -> None:
    from fmclient import _engine as engine_module
    from fmclient import retry

    before = retry.sleep
    with MockProvider():
        assert engine_module.overrides
    assert not engine_module.overrides
    assert retry.sleep is before


# -- fallbacks ------------------------------------------------------------------------------
def test_fallback_after_retryable_failure_says_who_answered() -> None:
    with MockProvider() as mock:
        for _ in range(3):
            mock.add_error(ServiceUnavailableError)
        mock.add_reply("from the fallback")
        reply = Client(max_retries=2).complete("hi", model="claude-sonnet", fallbacks=["gpt-sol"])
    assert reply.text == "from the fallback"
    assert mock.requests[-1].model == "openai/gpt-6.2-sol"
    assert [(a.provider, type(a.error).__name__ if a.error else None) for a in reply.attempts] == [
        ("anthropic", "ServiceUnavailableError"),
        ("openai", None),
    ]


@pytest.mark.parametrize("error", [AuthenticationError, ContentFilterError, ContextWindowExceededError])
def test_caller_errors_do_not_fall_back(error: type[fmclient.FMClientError]) -> None:
    with MockProvider() as mock:
        mock.add_error(error)
        with pytest.raises(error) as caught:
            Client().complete("hi", model="claude-sonnet", fallbacks=["gpt-sol"])
    assert len(mock.calls) == 1
    assert len(caught.value.attempts) == 1


def test_configured_fallback_table_and_fallback_on(tmp_path: Any) -> None:
    config = tmp_path / "f.toml"
    config.write_text('fallback_on = ["ContextWindowExceededError"]\n[fallbacks]\nclaude-haiku = ["gemini-flash"]\n')
    with MockProvider() as mock:
        mock.add_error(ContextWindowExceededError).add_reply("bigger window")
        reply = Client(config_path=str(config)).complete("long", model="claude-haiku")
    assert reply.text == "bigger window"
    assert mock.requests[-1].model == "gemini/gemini-3.8-flash"


def test_all_fallbacks_failing_raises_the_last_error_with_every_attempt() -> None:
    with MockProvider() as mock:
        mock.add_error(RateLimitError).add_error(ServiceUnavailableError)
        with pytest.raises(ServiceUnavailableError) as caught:
            Client(max_retries=0).complete("hi", model="gpt-sol", fallbacks=["gemini-flash"])
    assert [a.model for a in caught.value.attempts] == ["gpt-6.2-sol", "gemini-3.8-flash"]


def test_completion_to_dict_is_json_ready() -> None:
    with MockProvider():
        reply: Completion = Client().complete("hi", model="gpt-sol")
    data = json.loads(json.dumps(reply.to_dict()))
    assert data["usage"]["total_tokens"] == reply.usage.total_tokens
    assert data["message"] == {"role": "assistant", "content": "mock response"}


def test_embedding_with_a_chat_only_model_is_refused_before_sending() -> None:
    from fmclient import UnsupportedFeatureError

    client = Client(providers={"anthropic": {"api_key": "sk-ant-test-key-123456"}})
    with pytest.raises(UnsupportedFeatureError, match="does not make embeddings"):
        client.embed(["a"], model="claude-haiku")


def test_readiness_is_checked_once_per_target_not_per_call() -> None:
    client = Client()
    adapter = client.provider("mock")
    checks: list[str] = []
    adapter.check_ready = checks.append  # type: ignore[method-assign]
    for _ in range(3):
        client.complete("hi", model="mock/a")
    client.complete("hi", model="mock/b")
    assert checks == ["a", "b"]
