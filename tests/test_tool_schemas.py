"""Tool schemas generated from typed Python functions, and a call's arguments converted back.

Each annotation kind gets its exact expected schema; every ``$ref`` must resolve inside the
tool's own parameters schema. Over the wire: the OpenAI body carries the generated schema
intact, and the Gemini body carries it in the form Gemini documents (no keywords beside a
``$ref``).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import sys
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

import fmclient
from fmclient import Client, ConfigurationError, StructuredOutputError, ToolCall
from fmclient._schema import tool_from_function
from fmclient._validation import build_request
from fmclient.providers.base import ProviderSettings
from fmclient.providers.gemini import GeminiProvider, json_schema
from fmclient.secret import Secret
from tests.fakes import anthropic as anthropic_fake
from tests.fakes import gemini as gemini_fake
from tests.fakes.openai import Answer, FakeOpenAI
from tests.fakes.server import FakeServer


# -- types the tools take ------------------------------------------------------------------
class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address
    previous: list[Address] = []


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Movie(TypedDict):
    title: str
    year: int


class OldStyleMovie(typing.TypedDict):
    title: str


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def assert_refs_resolve(schema: dict[str, Any]) -> None:
    found = list(refs(schema))
    for ref in found:
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema.get("$defs", {}), f"{ref} points nowhere"


def parameters(fn: Any) -> dict[str, Any]:
    schema = dict(tool_from_function(fn).parameters)
    assert_refs_resolve(schema)
    return schema


# How a nested model appears in a tool's $defs: pydantic's schema, without field titles that
# would only repeat the field names.
ADDRESS = {
    "type": "object",
    "title": "Address",
    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
    "required": ["street", "city"],
}


# -- one annotation kind at a time ---------------------------------------------------------
def test_plain_types_required_and_defaults() -> None:
    def f(text: str, count: int, ratio: float = 0.5, flag: bool = False, items: list = [], table: dict = {}):  # type: ignore[no-untyped-def]  # noqa: B006
        pass

    assert parameters(f) == {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number", "default": 0.5},
            "flag": {"type": "boolean", "default": False},
            "items": {"type": "array", "items": {}, "default": []},
            "table": {"type": "object", "additionalProperties": True, "default": {}},
        },
        "required": ["text", "count"],
        "additionalProperties": False,
    }


def test_nested_models_put_every_definition_at_the_top() -> None:
    def register(person: Person, others: list[Person] | None = None) -> None:
        pass

    assert parameters(register) == {
        "type": "object",
        "$defs": {
            "Address": ADDRESS,
            "Person": {
                "type": "object",
                "title": "Person",
                "properties": {
                    "name": {"type": "string"},
                    "home": {"$ref": "#/$defs/Address"},
                    "previous": {"type": "array", "items": {"$ref": "#/$defs/Address"}, "default": []},
                },
                "required": ["name", "home"],
            },
        },
        "properties": {
            "person": {"$ref": "#/$defs/Person"},
            "others": {
                "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/Person"}}, {"type": "null"}],
                "default": None,
            },
        },
        "required": ["person"],
        "additionalProperties": False,
    }


def test_enums_with_and_without_defaults() -> None:
    def f(unit: Unit, priority: Priority = Priority.LOW) -> None:
        pass

    assert parameters(f) == {
        "type": "object",
        "$defs": {
            "Unit": {"type": "string", "title": "Unit", "enum": ["c", "f"]},
            "Priority": {"type": "integer", "title": "Priority", "enum": [1, 2]},
        },
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "priority": {"$ref": "#/$defs/Priority", "default": 1},
        },
        "required": ["unit"],
        "additionalProperties": False,
    }


def test_dataclass_and_typed_dict() -> None:
    def f(where: Point, films: list[Movie], by_name: dict[str, Point]) -> None:
        pass

    assert parameters(f) == {
        "type": "object",
        "$defs": {
            "Point": {
                "type": "object",
                "title": "Point",
                "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
                "required": ["x"],
            },
            "Movie": {
                "type": "object",
                "title": "Movie",
                "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
                "required": ["title", "year"],
            },
        },
        "properties": {
            "where": {"$ref": "#/$defs/Point"},
            "films": {"type": "array", "items": {"$ref": "#/$defs/Movie"}},
            "by_name": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Point"}},
        },
        "required": ["where", "films", "by_name"],
        "additionalProperties": False,
    }


def test_dates_optionals_and_literals() -> None:
    def f(
        start: datetime.datetime,
        day: datetime.date | None = None,
        length: Optional[int] = None,  # noqa: UP045 - the typing.Optional spelling is what is tested
        mode: Literal["fast", "slow"] = "fast",
        only: Literal["x"] = "x",
        either: Literal["a", 1] = 1,
    ) -> None:
        pass

    assert parameters(f) == {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            "day": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": None},
            "length": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
            "only": {"type": "string", "const": "x", "default": "x"},
            "either": {"enum": ["a", 1], "default": 1},
        },
        "required": ["start"],
        "additionalProperties": False,
    }


def test_google_docstring_gives_descriptions_and_annotated_field_wins() -> None:
    def search(
        query: str,
        limit: Annotated[int, Field(description="At most this many.", ge=1)] = 10,
        home: Address | None = None,
    ) -> list[str]:
        """Search the catalogue.

        Matches titles and authors.

        Args:
            query (str): Words to look for,
                all of them.
            limit: Not used: the Field description wins.
            home: Where the user lives.

        Returns:
            Titles.
        """
        return []

    tool = tool_from_function(search)
    assert tool.description == "Search the catalogue.\n\nMatches titles and authors."
    assert tool.parameters == {
        "type": "object",
        "$defs": {"Address": ADDRESS},
        "properties": {
            "query": {"type": "string", "description": "Words to look for, all of them."},
            "limit": {"type": "integer", "minimum": 1, "default": 10, "description": "At most this many."},
            "home": {
                "anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}],
                "default": None,
                "description": "Where the user lives.",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_numpy_docstring_gives_descriptions() -> None:
    def convert(amount: float, currency: str = "EUR") -> float:
        """Convert money.

        Parameters
        ----------
        amount : float
            How much,
            in the source currency.
        currency : str, optional
            ISO code.

        Returns
        -------
        float
        """
        return amount

    tool = tool_from_function(convert)
    assert tool.description == "Convert money."
    assert tool.parameters["properties"] == {
        "amount": {"type": "number", "description": "How much, in the source currency."},
        "currency": {"type": "string", "default": "EUR", "description": "ISO code."},
    }


def test_kwargs_make_the_parameters_open_and_names_pydantic_reserves_still_work() -> None:
    def f(json: str, model_config: int, _private: bool = True, **extra: Any) -> None:
        pass

    assert parameters(f) == {
        "type": "object",
        "properties": {
            "json": {"type": "string"},
            "model_config": {"type": "integer"},
            "_private": {"type": "boolean", "default": True},
        },
        "required": ["json", "model_config"],
        "additionalProperties": True,
    }


def test_a_function_passed_as_a_tool_goes_through_the_same_generator() -> None:
    def lookup(point: Point) -> None:
        """Find what is at a point."""

    (tool,) = build_request("hi", tools=[lookup]).tools
    assert tool == tool_from_function(lookup)
    assert tool.parameters["properties"] == {"point": {"$ref": "#/$defs/Point"}}


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic takes typing.TypedDict from 3.12 on")
def test_typing_typed_dict_before_312_is_a_clear_error() -> None:
    def f(value: OldStyleMovie) -> None:
        pass

    with pytest.raises(TypeError, match=r"tool 'f': .*typing_extensions.TypedDict"):
        tool_from_function(f)


def test_an_annotation_that_cannot_be_resolved_is_named() -> None:
    def f(value: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(TypeError, match=r"tool 'f': cannot resolve the parameter annotations: .*NotDefinedAnywhere"):
        tool_from_function(f)


# -- without pydantic ----------------------------------------------------------------------
@pytest.fixture
def no_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # "import pydantic" now raises ImportError


def plain_tool(
    city: str,
    days: int | None = None,
    unit: Literal["c", "f"] = "c",
    tags: list[str] = [],  # noqa: B006
    scores: dict[str, float] | None = None,
    anything: Any = None,
) -> None:
    """Weather.

    Args:
        city: The city.
    """


def test_without_pydantic_plain_annotations_get_the_schema_pydantic_gives(no_pydantic: None) -> None:
    without = tool_from_function(plain_tool)
    assert without.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city."},
            "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
            "scores": {
                "anyOf": [{"type": "object", "additionalProperties": {"type": "number"}}, {"type": "null"}],
                "default": None,
            },
            "anything": {"default": None},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert fmclient.tool_arguments(plain_tool, {"city": "Oslo", "days": 2}) == {"city": "Oslo", "days": 2}
    with pytest.raises(StructuredOutputError, match=r"missing required arguments \['city'\]"):
        fmclient.tool_arguments(plain_tool, {"days": 2})


def test_with_pydantic_plain_annotations_give_the_same_schema() -> None:
    with_pydantic = tool_from_function(plain_tool)
    assert with_pydantic.parameters["properties"]["scores"] == {
        "anyOf": [{"type": "object", "additionalProperties": {"type": "number"}}, {"type": "null"}],
        "default": None,
    }
    assert with_pydantic.parameters["properties"]["anything"] == {"default": None}
    assert with_pydantic.parameters["required"] == ["city"]


def test_without_pydantic_a_richer_annotation_names_the_extra(no_pydantic: None) -> None:
    def f(when: datetime.date) -> None:
        pass

    def g(unit: Unit) -> None:
        pass

    def h(points: list[Point]) -> None:
        pass

    for fn, kind in ((f, "date"), (g, "Unit"), (h, "Point")):
        with pytest.raises(ConfigurationError, match=rf"annotated .*{kind}.*pip install \"fmclient\[structured\]\""):
            tool_from_function(fn)
        with pytest.raises(ConfigurationError, match="fmclient\\[structured\\]"):
            build_request("hi", tools=[fn])


def test_the_pydantic_less_check_matches_pydantic_output() -> None:
    """Both paths for the same plain function give one schema (checked without mocking the one)."""
    with_pydantic = dict(tool_from_function(plain_tool).parameters)
    saved = sys.modules.get("pydantic")
    sys.modules["pydantic"] = None  # type: ignore[assignment]
    try:
        without = dict(tool_from_function(plain_tool).parameters)
    finally:
        sys.modules["pydantic"] = saved  # type: ignore[assignment]
    assert without == with_pydantic


# -- arguments back into typed values ------------------------------------------------------
def book(
    person: Person, seat: Point, when: datetime.datetime, unit: Unit = Unit.CELSIUS, films: list[Movie] | None = None
) -> str:
    return "ok"


def test_tool_arguments_turn_json_into_the_function_types() -> None:
    call = ToolCall(
        "call_1",
        "book",
        {
            "person": {"name": "Ada", "home": {"street": "1 Main", "city": "Oslo"}},
            "seat": {"x": 1.5},
            "when": "2026-03-01T09:30:00Z",
            "unit": "f",
        },
    )
    arguments = fmclient.tool_arguments(book, call)
    assert arguments == {
        "person": Person(name="Ada", home=Address(street="1 Main", city="Oslo")),
        "seat": Point(x=1.5, y=0.0),
        "when": datetime.datetime(2026, 3, 1, 9, 30, tzinfo=datetime.timezone.utc),
        "unit": Unit.FAHRENHEIT,
    }
    assert "films" not in arguments  # not sent: the function's own default applies
    assert book(**arguments) == "ok"


def test_tool_arguments_that_do_not_fit_are_a_structured_output_error() -> None:
    with pytest.raises(StructuredOutputError) as caught:
        fmclient.tool_arguments(book, {"person": {"name": "Ada"}, "seat": {"x": "far"}, "when": "soon"})
    message = str(caught.value)
    assert "arguments for tool 'book' do not fit" in message
    assert "person.home: Field required" in message
    assert "seat.x: Input should be a valid number" in message
    assert "when: Input should be a valid datetime" in message
    assert '"seat": {"x": "far"}' in caught.value.text
    with pytest.raises(StructuredOutputError, match=r"unknown arguments \['colour'\]"):
        fmclient.tool_arguments(book, {"colour": "red"})


def plain_scalars(
    ratio: float, count: int, label: str = "x", flag: bool = False, positive: int = Field(default=1, ge=1)
) -> None:
    """Plain scalar parameters, one with a constraint in its Field() default."""


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        # Every value already of its parameter's exact type: returned as sent.
        (
            {"ratio": 0.5, "count": 2, "label": "y", "flag": True},
            {"ratio": 0.5, "count": 2, "label": "y", "flag": True},
        ),
        # Anything else still goes through pydantic's conversion.
        ({"ratio": 1, "count": 2}, {"ratio": 1.0, "count": 2}),
        ({"ratio": 0.5, "count": "3"}, {"ratio": 0.5, "count": 3}),
        ({"ratio": 0.5, "count": True}, {"ratio": 0.5, "count": 1}),
        ({"ratio": 0.5, "count": 2, "positive": 4}, {"ratio": 0.5, "count": 2, "positive": 4}),
    ],
)
def test_tool_arguments_of_plain_types_are_what_pydantic_gives(arguments: dict[str, Any], expected: Any) -> None:
    got = fmclient.tool_arguments(plain_scalars, arguments)
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    "arguments",
    [
        {"ratio": 0.5},  # count missing
        {"ratio": 0.5, "count": 2, "colour": "red"},  # unknown
        {"ratio": 0.5, "count": 2, "positive": 0},  # of its exact type, but below the Field's ge=1
        {"ratio": 0.5, "count": 2, "flag": "maybe"},
    ],
)
def test_tool_arguments_of_plain_types_that_do_not_fit_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(StructuredOutputError, match="plain_scalars"):
        fmclient.tool_arguments(plain_scalars, arguments)


def test_tool_arguments_pass_extra_keys_to_a_kwargs_function() -> None:
    def f(n: int, **rest: Any) -> None:
        pass

    assert fmclient.tool_arguments(f, {"n": "3", "note": "x"}) == {"n": 3, "note": "x"}


# -- response_format shares the home --------------------------------------------------------
def test_response_format_model_schema_keeps_nested_definitions_resolvable() -> None:
    request = build_request("hi", response_format=Person)
    assert request.response_format is not None
    schema = dict(request.response_format.schema)
    assert schema == Person.model_json_schema()
    assert_refs_resolve(schema)


# -- over the wire ---------------------------------------------------------------------------
def test_openai_body_carries_the_generated_schema_intact(fake_server: FakeServer) -> None:
    fake = FakeOpenAI(fake_server)
    fake.answer(
        Answer(
            tool_calls=[
                (
                    "call_9",
                    "book",
                    '{"person": {"name": "Ada", "home": {"street": "s", "city": "c"}}, "seat": {"x": 2}, "when": "2026-01-01T00:00:00Z"}',
                )
            ]
        )
    )
    client = Client(
        providers={"openai": {"base_url": fake_server.url + "/v1", "api_key": "sk-test-0123"}}, max_retries=0
    )
    reply = client.complete("Book it", model="openai/gpt-4o", tools=[book])
    (body,) = fake.bodies()
    (sent,) = body["tools"]
    assert sent == {
        "type": "function",
        "function": {"name": "book", "parameters": dict(tool_from_function(book).parameters)},
    }
    parameters = sent["function"]["parameters"]
    assert set(parameters["$defs"]) == {"Address", "Movie", "Person", "Point", "Unit"}
    assert parameters["properties"]["unit"] == {"$ref": "#/$defs/Unit", "default": "c"}
    assert parameters["properties"]["when"] == {"type": "string", "format": "date-time"}
    assert_refs_resolve(parameters)
    (call,) = reply.tool_calls
    assert fmclient.tool_arguments(book, call)["seat"] == Point(x=2.0)
    assert len(fake_server.requests) == 1


def test_anthropic_body_carries_the_generated_schema_intact(fake_server: FakeServer) -> None:
    arguments = {
        "person": {"name": "Ada", "home": {"street": "s", "city": "c"}},
        "seat": {"x": 1},
        "when": "2026-01-01",
    }
    fake_server.queue(
        anthropic_fake.message_reply(
            [anthropic_fake.tool_use_block("toolu_1", "book", arguments)], stop_reason="tool_use"
        )
    )
    client = Client(
        providers={"anthropic": {"base_url": fake_server.url, "api_key": "test-key-anthropic"}}, max_retries=0
    )
    try:
        reply = client.complete("Book it", model=f"anthropic/{anthropic_fake.MODEL}", tools=[book], max_tokens=100)
    finally:
        client.close()
    assert len(fake_server.requests) == 1
    (sent,) = fake_server.requests[0].json()["tools"]
    assert sent == {"name": "book", "input_schema": dict(tool_from_function(book).parameters)}
    assert_refs_resolve(sent["input_schema"])
    (call,) = reply.tool_calls
    assert fmclient.tool_arguments(book, call)["when"] == datetime.datetime(2026, 1, 1)


def test_gemini_body_carries_refs_without_sibling_keywords(fake_server: FakeServer) -> None:
    provider = GeminiProvider(
        ProviderSettings(name="gemini", type="gemini", api_key=Secret("test-key-not-real"), base_url=fake_server.url)
    )
    fake_server.queue(gemini_fake.generate_reply("Booked."))
    request = build_request("Book it", tools=[book], response_format=Person, model="gemini-2.5-flash")
    try:
        assert provider.complete(request).text == "Booked."
    finally:
        provider.close()
    assert len(fake_server.requests) == 1
    sent = fake_server.requests[0].json()
    (declaration,) = sent["tools"][0]["functionDeclarations"]
    # The SDK sends this field under its snake_case name (it is opaque JSON to its camelCase mapper).
    schema = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    # Gemini: "If $ref is set on a sub-schema, no other properties, except for those starting
    # as a $, may be set." The default moves beside a one-member anyOf, which means the same.
    assert schema["properties"]["unit"] == {"anyOf": [{"$ref": "#/$defs/Unit"}], "default": "c"}
    assert schema == json_schema(tool_from_function(book).parameters)
    for sent_schema in (schema, sent["generationConfig"]["responseJsonSchema"]):
        assert_refs_resolve(sent_schema)
        assert_no_ref_siblings(sent_schema)
    assert sent["generationConfig"]["responseJsonSchema"] == Person.model_json_schema()


def assert_no_ref_siblings(node: Any) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            assert all(key.startswith("$") for key in node), node
        for key, value in node.items():
            if key not in ("default", "enum", "const"):
                assert_no_ref_siblings(value)
    elif isinstance(node, list):
        for item in node:
            assert_no_ref_siblings(item)


def test_gemini_json_schema_moves_only_ref_siblings_and_unwraps_single_all_of() -> None:
    schema = {
        "type": "object",
        "$defs": {"A": {"type": "string"}},
        "properties": {
            "a": {"$ref": "#/$defs/A", "description": "d", "default": {"$ref": "kept as data"}},
            "b": {"$ref": "#/$defs/A"},
            "c": {"allOf": [{"$ref": "#/$defs/A"}], "default": "x"},
        },
    }
    assert json_schema(schema) == {
        "type": "object",
        "$defs": {"A": {"type": "string"}},
        "properties": {
            "a": {"anyOf": [{"$ref": "#/$defs/A"}], "description": "d", "default": {"$ref": "kept as data"}},
            "b": {"$ref": "#/$defs/A"},
            "c": {"anyOf": [{"$ref": "#/$defs/A"}], "default": "x"},
        },
    }
