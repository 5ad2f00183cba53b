"""Structured output that re-asks: complete(..., response_format=Model, output_retries=n) over the
real OpenAI SDK and its wire fake; usage and cost cover every attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fmclient import Client, StructuredOutputError, Usage
from fmclient._chat import REASK
from fmclient.testing import MockProvider
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer

MODEL = "openai/gpt-4o"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeServer() as server:
        yield FakeOpenAI(server)


def make_client(fake: FakeOpenAI) -> Client:
    Path("fmclient.toml").write_text('[prices]\nopenai = "openai"\n')  # the fake's host: OpenAI's prices
    return Client(providers={"openai": {"base_url": fake.server.url + "/v1", "api_key": "sk-test-0123456789"}})


def history(fake: FakeOpenAI, index: int) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in fake.bodies()[index]["messages"]]


def test_a_reply_that_does_not_validate_is_asked_again_with_its_errors(fake: FakeOpenAI) -> None:
    pytest.importorskip("genai_prices")
    fake.answer(
        Answer("Ada, 36", prompt_tokens=10, completion_tokens=3),
        Answer('{"name": "Ada"}', prompt_tokens=30, completion_tokens=5),
        Answer('{"name": "Ada", "age": 36}', prompt_tokens=32, completion_tokens=9),
    )
    with make_client(fake) as client:
        reply = client.complete("Ada, aged 36", model=MODEL, response_format=Person, output_retries=2)
    assert reply.parsed == Person(name="Ada", age=36)
    assert len(fake.bodies()) == 3
    second, third = history(fake, 1), history(fake, 2)
    assert second[:2] == [("user", "Ada, aged 36"), ("assistant", "Ada, 36")]
    assert second[2][0] == "user" and second[2][1].startswith("Your reply did not match the required format: ")
    assert "Person" in second[2][1]
    # Only the last failed answer goes back: the third request is as long as the second.
    assert len(third) == 3 and third[1] == ("assistant", '{"name": "Ada"}') and "age" in third[2][1]
    assert reply.usage == Usage(72, 17)
    assert reply.cost is not None
    one_call = client_cost(fake, Usage(72, 17))
    assert reply.cost.total == one_call


def client_cost(fake: FakeOpenAI, usage: Usage) -> Any:
    """What the price table says these tokens cost on gpt-4o (one call with them all)."""
    fake.answer(
        Answer('{"name": "x", "age": 1}', prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens)
    )
    with make_client(fake) as client:
        reply = client.complete("x", model=MODEL, response_format=Person)
    assert reply.cost is not None
    return reply.cost.total


def test_when_the_retries_run_out_the_error_carries_every_attempt(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer("no", prompt_tokens=10, completion_tokens=1), Answer("still no", prompt_tokens=20, completion_tokens=2)
    )
    with make_client(fake) as client, pytest.raises(StructuredOutputError) as caught:
        client.complete("Ada, aged 36", model=MODEL, response_format=Person, output_retries=1)
    error = caught.value
    assert len(fake.bodies()) == 2
    assert [c.text for c in error.completions] == ["no", "still no"]
    assert error.usage == Usage(30, 3)
    assert error.text == "still no"


def test_async_reasks_too(fake: FakeOpenAI) -> None:
    fake.answer(
        Answer("{}", prompt_tokens=5, completion_tokens=1),
        Answer('{"name": "A", "age": 1}', prompt_tokens=7, completion_tokens=2),
    )

    async def go() -> Any:
        async with make_client(fake) as client:
            return await client.acomplete("A, 1", model=MODEL, response_format=Person, output_retries=1)

    reply = asyncio.run(go())
    assert reply.parsed == Person(name="A", age=1) and reply.usage == Usage(12, 3)
    assert len(fake.bodies()) == 2


def test_output_retries_needs_a_response_format_and_checks_before_sending() -> None:
    with MockProvider() as mock, Client() as client:
        with pytest.raises(ValueError, match="needs a response_format"):
            client.complete("x", model=MODEL, output_retries=2)
        with pytest.raises(ValueError, match="output_retries must be"):
            client.complete("x", model=MODEL, response_format=Person, output_retries=-1)
    assert mock.requests == []


def test_a_run_with_a_response_format_parses_the_final_answer_and_reasks_it() -> None:
    def age_of(name: str) -> int:
        """Look an age up."""
        return 36

    with MockProvider() as mock, Client() as client:
        mock.add_tool_call("age_of", {"name": "Ada"}).add_reply("Ada is 36").add_reply('{"name": "Ada", "age": 36}')
        run = client.run("Who?", tools=[age_of], model=MODEL, response_format=Person, output_retries=1)
        assert REASK.split(":")[0] in mock.requests[2].messages[-1].text
    assert run.parsed == Person(name="Ada", age=36)
    assert len(run.steps) == 2  # the re-ask is part of the second step's call


def test_a_reply_that_calls_tools_is_not_checked_as_the_structured_answer(fake: FakeOpenAI) -> None:
    # It used to raise StructuredOutputError: a tool call has no JSON text to validate yet.
    fake.answer(Answer(tool_calls=[("c1", "age_of", '{"name": "Ada"}')]))

    def age_of(name: str) -> int:
        """Look an age up."""
        return 36

    with make_client(fake) as client:
        reply = client.complete("Who?", model=MODEL, tools=[age_of], response_format=Person)
    assert reply.tool_calls[0].name == "age_of" and reply.parsed is None
