"""Bad input is refused before any request, with a message naming the argument."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

import pytest

from fmclient import Client, ConfigurationError, ImagePart, Message, Tool, UnsupportedFeatureError
from fmclient._validation import build_request, tool_from_function
from fmclient.providers.base import Capabilities
from fmclient.testing import MockProvider

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


# Bad chat input, refused before any request (tests/test_bad_input.py drives every entry point with it).
BAD_REQUESTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"prompt": ""}, ValueError, "prompt must not be empty"),
    ({"prompt": "   "}, ValueError, "prompt must not be empty"),
    ({"prompt": []}, ValueError, "prompt must not be empty"),
    ({"prompt": 42}, TypeError, "prompt must be a str or a list"),
    ({"prompt": [{"role": "robot", "content": "hi"}]}, ValueError, r"messages\[0\].role"),
    ({"prompt": [{"role": "user", "content": 3}]}, TypeError, r"messages\[0\].content"),
    ({"prompt": [{"role": "user", "content": ""}]}, ValueError, r"messages\[0\].content must not be empty"),
    ({"prompt": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, TypeError, r"content\[0\].text"),
    ({"prompt": [{"role": "user", "content": [{"type": "hologram"}]}]}, ValueError, "must be 'text', 'image'"),
    ({"prompt": [{"role": "user", "content": [{"type": "video"}]}]}, ValueError, "a video part needs 'video'"),
    (
        {"prompt": [{"role": "user", "content": [{"type": "image", "image": b"not an image"}]}]},
        ValueError,
        "not a PNG",
    ),
    ({"prompt": [{"role": "tool", "content": "42"}]}, ValueError, "tool_call_id"),
    ({"prompt": [{"role": "user", "content": "hi", "colour": 1}]}, ValueError, "unknown keys"),
    ({"prompt": [{"role": "system", "content": "be brief"}]}, ValueError, "at least one user"),
    (
        {"prompt": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
        ValueError,
        "system message must come before",
    ),
    ({"prompt": "hi", "system": 5}, TypeError, "system must be a str"),
    ({"prompt": "hi", "max_tokens": -1}, ValueError, "max_tokens must be positive"),
    ({"prompt": "hi", "max_tokens": 0}, ValueError, "max_tokens must be positive"),
    ({"prompt": "hi", "max_tokens": 1.5}, TypeError, "max_tokens must be an int"),
    ({"prompt": "hi", "max_tokens": True}, TypeError, "max_tokens must be an int"),
    ({"prompt": "hi", "temperature": 3}, ValueError, "temperature must be between 0 and 2"),
    ({"prompt": "hi", "temperature": float("nan")}, ValueError, "temperature"),
    ({"prompt": "hi", "temperature": "hot"}, TypeError, "temperature must be a number"),
    ({"prompt": "hi", "top_p": 1.5}, ValueError, "top_p must be between 0 and 1"),
    ({"prompt": "hi", "stop": [""]}, ValueError, r"stop\[0\] must not be empty"),
    ({"prompt": "hi", "stop": [1]}, TypeError, r"stop\[0\] must be a str"),
    ({"prompt": "hi", "tools": "search"}, TypeError, "tools must be a list"),
    (
        {"prompt": "hi", "tools": [{"name": "f", "parameters": {"type": "banana"}}]},
        ValueError,
        "not a JSON Schema type",
    ),
    ({"prompt": "hi", "tools": [{"name": "f", "parameters": "string"}]}, TypeError, "must be a JSON Schema dict"),
    ({"prompt": "hi", "tools": [{"name": "f", "parameters": {"type": "string"}}]}, ValueError, "type 'object'"),
    ({"prompt": "hi", "tools": [{"name": "bad name!"}]}, ValueError, "tool name"),
    ({"prompt": "hi", "tools": [{"name": "f"}, {"name": "f"}]}, ValueError, "duplicate tool names"),
    ({"prompt": "hi", "tool_choice": "required"}, ValueError, "needs tools"),
    ({"prompt": "hi", "tools": [{"name": "f"}], "tool_choice": "g"}, ValueError, "tool_choice 'g'"),
    ({"prompt": "hi", "response_format": "json"}, TypeError, "response_format must be"),
    ({"prompt": "hi", "response_format": {"type": "thing"}}, ValueError, "not a JSON Schema type"),
    ({"prompt": "hi", "timeout": -1}, ValueError, "timeout must be positive"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_REQUESTS)
def test_bad_input_is_refused_before_any_request(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    client = Client()
    with MockProvider() as mock:
        kwargs = dict(kwargs)
        prompt = kwargs.pop("prompt")
        with pytest.raises(error, match=message):
            client.complete(prompt, model="gpt-sol", **kwargs)
        with pytest.raises(error, match=message):
            client.stream(prompt, model="gpt-sol", **kwargs)
    assert mock.calls == []


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ([], ValueError, "texts must not be empty"),
        ([""], ValueError, r"texts\[0\]"),
        ([1], TypeError, r"texts\[0\] must be a str"),
        (5, TypeError, "texts must be"),
    ],
)
def test_bad_embed_input(texts: Any, error: type[Exception], message: str) -> None:
    with MockProvider() as mock, pytest.raises(error, match=message):
        Client().embed(texts, model="titan-embed")
    assert mock.calls == []


def test_unknown_model_is_refused_even_under_the_mock() -> None:
    with MockProvider() as mock, pytest.raises(ConfigurationError, match="unknown model or alias"):
        Client().complete("hi", model="gpt-5o-typo")
    assert mock.calls == []


def test_bad_max_retries() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        Client(max_retries=-2)


def test_system_messages_are_gathered_and_tool_results_named() -> None:
    request = build_request(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "weather", "arguments": '{"city": "Oslo"}'}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": {"temp": 3}},
        ],
        system="answer in English",
    )
    assert request.system == "answer in English\n\nbe brief"
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1].tool_calls[0].arguments == {"city": "Oslo"}
    assert request.messages[2].name == "weather"
    assert request.messages[2].content == '{"temp": 3}'


def test_images_from_every_source(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    for part in (ImagePart.from_source(PNG), ImagePart.from_source(path), ImagePart.from_path(str(path))):
        assert (part.data, part.media_type) == (PNG, "image/png")
    part = ImagePart.from_source(data_uri)
    assert (part.data, part.media_type) == (PNG, "image/png")
    url = ImagePart.from_source("https://example.com/cat.jpg?size=2")
    assert (url.url, url.media_type, url.data) == ("https://example.com/cat.jpg?size=2", "image/jpeg", None)
    with pytest.raises(ValueError, match="an image URL must be"):  # a str is a URL, never a path
        ImagePart.from_source(str(path))
    with pytest.raises(ValueError, match="not found"):
        ImagePart.from_path(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="base64"):
        ImagePart.from_source("data:image/png,notbase64")
    message = Message.user(["What is this?", {"type": "image", "image": PNG}])
    assert isinstance(message.content[1], ImagePart)
    assert "bytes" in repr(message.content[1])  # a repr never dumps the image


def test_tools_in_every_accepted_shape() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    shapes = [
        {"name": "search", "description": "Search", "parameters": schema},
        {"type": "function", "function": {"name": "search", "description": "Search", "parameters": schema}},
        {"name": "search", "description": "Search", "input_schema": schema},
        Tool("search", "Search", schema),
    ]
    for shape in shapes:
        (tool,) = build_request("hi", tools=[shape]).tools
        assert (tool.name, tool.description, tool.parameters) == ("search", "Search", schema)
    request = build_request("hi", tools=[shapes[0]], tool_choice={"type": "function", "function": {"name": "search"}})
    assert request.tool_choice == "search"


def test_tool_from_a_typed_function() -> None:
    def get_weather(city: str, unit: Literal["c", "f"] = "c", days: int | None = None) -> str:
        """Current weather for a city.

        More detail for the model.

        Returns:
            A sentence.
        """
        return ""

    tool = tool_from_function(get_weather)
    assert tool.name == "get_weather"
    assert tool.description == "Current weather for a city.\n\nMore detail for the model."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["c", "f"], "type": "string", "default": "c"},
            "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_capabilities_refuse_what_a_model_cannot_do() -> None:
    request = build_request("hi", tools=[{"name": "f"}], stop=["a", "b", "c"])
    from dataclasses import replace

    request = replace(request, model="m")
    with pytest.raises(UnsupportedFeatureError, match="does not support tools"):
        Capabilities(tools=False).check(request, provider="p")
    with pytest.raises(UnsupportedFeatureError, match="more than 2 stop sequences"):
        Capabilities(max_stop_sequences=2).check(request, provider="p")
    with pytest.raises(UnsupportedFeatureError, match="streaming"):
        Capabilities(streaming=False).check(request, provider="p", streaming=True)
    image = replace(build_request([{"role": "user", "content": [{"type": "image", "image": PNG}]}]), model="m")
    with pytest.raises(UnsupportedFeatureError, match="image input"):
        Capabilities(images=False).check(image, provider="p")
