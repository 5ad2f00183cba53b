"""fmclient inside LangChain: a chat model and an embeddings model.

    pip install "fmclient[langchain]"

    from fmclient.integrations.langchain import ChatFMClient, FMClientEmbeddings

    llm = ChatFMClient(model="claude-sonnet", max_tokens=200)      # any fmclient alias or provider/model
    llm.invoke("What is a foundation model?")
    vectors = FMClientEmbeddings(model="text-embedding-3-small").embed_documents(["a", "b"])

Every call goes through an :class:`fmclient.Client`, so configuration-driven provider choice, the one
retry layer, fallbacks and typed errors work unchanged inside chains. Pass ``client=`` to share a
configured client; otherwise one is built from fmclient's configuration on first use.

Only fmclient's public API is used here; the core never imports this module.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal, cast

try:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.embeddings import Embeddings
    from langchain_core.exceptions import OutputParserException
    from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
    from langchain_core.messages.tool import tool_call_chunk
    from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
    from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
    from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
    from langchain_core.utils.pydantic import is_basemodel_subclass
    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'fmclient.integrations.langchain needs langchain-core: pip install "fmclient[langchain]"'
    ) from exc

import fmclient
from fmclient import (
    Client,
    Completion,
    ImagePart,
    Message,
    StructuredOutputError,
    TextPart,
    ToolCall,
    UnsupportedFeatureError,
    Usage,
)

__all__ = [
    "PROVIDER_STATE_KEY",
    "ChatFMClient",
    "FMClientEmbeddings",
    "to_ai_message",
    "to_fmclient_messages",
    "usage_metadata",
]

#: Where an AIMessage carries fmclient's opaque provider state (thinking blocks, thought signatures).
PROVIDER_STATE_KEY = "fmclient_provider_state"
_BYTES_KEY = "__fmclient_bytes__"

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]


# -- usage ---------------------------------------------------------------------------------------
def usage_metadata(usage: Usage) -> UsageMetadata:
    """fmclient's Usage as LangChain's ``usage_metadata``.

    Both count cache reads and writes inside ``input_tokens`` and reasoning inside ``output_tokens``,
    so the numbers carry over unchanged. ``cache_write_tokens`` and ``reasoning_tokens`` are read
    only when this fmclient's ``Usage`` has them (older versions report neither).
    """
    input_details = InputTokenDetails(cache_read=usage.cached_input_tokens)
    cache_write = _optional_count(usage, "cache_write_tokens")
    if cache_write is not None:
        input_details["cache_creation"] = cache_write
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "input_token_details": input_details,
    }
    reasoning = _optional_count(usage, "reasoning_tokens")
    if reasoning is not None:
        out["output_token_details"] = OutputTokenDetails(reasoning=reasoning)
    return cast("UsageMetadata", out)


def _optional_count(usage: Usage, name: str) -> int | None:
    if not hasattr(usage, name):
        return None
    value = getattr(usage, name, 0)
    return value if isinstance(value, int) else 0


# -- provider state: JSON-safe on the LangChain side -----------------------------------------------
def _to_json_safe(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"provider state holds a {type(value).__name__}, which cannot be carried in a LangChain message")


def _from_json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {_BYTES_KEY}:
            return base64.b64decode(value[_BYTES_KEY])
        return {k: _from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_safe(v) for v in value]
    return value


# -- LangChain messages -> fmclient messages -------------------------------------------------------
def to_fmclient_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as fmclient ``Message`` objects; what fmclient cannot send raises first."""
    return [_to_fmclient_message(m, i) for i, m in enumerate(messages)]


def _to_fmclient_message(message: BaseMessage, index: int) -> Message:
    where = f"messages[{index}]"
    name = message.name if isinstance(message.name, str) else None
    if isinstance(message, SystemMessage):
        return Message(role="system", content=_text_only(message.content, where, "system"))
    if isinstance(message, HumanMessage):
        return Message(role="user", content=_user_content(message.content, where), name=name)
    if isinstance(message, AIMessage):
        state = message.additional_kwargs.get(PROVIDER_STATE_KEY)
        return Message(
            role="assistant",
            content=_assistant_text(message.content, where),
            tool_calls=tuple(
                ToolCall(id=c["id"] or "", name=c["name"], arguments=dict(c["args"])) for c in message.tool_calls
            ),
            name=name,
            provider_state=_from_json_safe(state) if isinstance(state, Mapping) else None,
        )
    if isinstance(message, ToolMessage):
        return Message(
            role="tool",
            content=_text_only(message.content, where, "tool"),
            tool_call_id=message.tool_call_id,
            name=name,
        )
    if isinstance(message, ChatMessage) and message.role == "user":
        return Message(role="user", content=_user_content(message.content, where), name=name)
    if isinstance(message, ChatMessage) and message.role in ("system", "assistant"):
        role: Literal["system", "assistant"] = "system" if message.role == "system" else "assistant"
        return Message(role=role, content=_text_only(message.content, where, role), name=name)
    raise UnsupportedFeatureError(f"{where}: fmclient cannot send a LangChain {type(message).__name__}")


def _blocks(content: str | list[str | dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [{"type": "text", "text": b} if isinstance(b, str) else b for b in content]


def _text_only(content: str | list[str | dict[str, Any]], where: str, role: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in _blocks(content):
        if block.get("type") != "text":
            raise UnsupportedFeatureError(
                f"{where}: fmclient sends only text in a {role} message, not a {block.get('type')!r} block"
            )
        texts.append(str(block.get("text", "")))
    return "".join(texts)


# Blocks of an assistant message that repeat what AIMessage.tool_calls or the provider state carry.
_ASSISTANT_ECHO_BLOCKS = frozenset({"tool_use", "tool_call", "function_call", "thinking", "reasoning"})


def _assistant_text(content: str | list[str | dict[str, Any]], where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind not in _ASSISTANT_ECHO_BLOCKS:
            raise UnsupportedFeatureError(f"{where}: fmclient cannot send a {kind!r} block in an assistant message")
    return "".join(texts)


def _user_content(content: str | list[str | dict[str, Any]], where: str) -> str | tuple[TextPart | ImagePart, ...]:
    if isinstance(content, str):
        return content
    parts: list[TextPart | ImagePart] = []
    for i, block in enumerate(_blocks(content)):
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(str(block.get("text", ""))))
        elif kind in ("image", "image_url"):
            parts.append(_image_part(block, f"{where}.content[{i}]"))
        else:
            raise UnsupportedFeatureError(
                f"{where}.content[{i}]: fmclient sends text and image blocks, not {kind!r} blocks"
            )
    return tuple(parts)


def _image_part(block: Mapping[str, Any], where: str) -> ImagePart:
    """Any of LangChain's image block shapes -> fmclient ImagePart.

    OpenAI style ``{"type": "image_url", "image_url": {"url": ...}}``; the standard v1 block
    ``{"type": "image", "base64" | "url": ..., "mime_type": ...}``; the older
    ``{"type": "image", "source_type": "base64" | "url", "data" | "url": ...}``; and Anthropic's
    ``{"type": "image", "source": {"type": "base64" | "url", ...}}``. A URL is never read as a local
    file (a chain that forwards its users' messages must not let them read the server's disk).
    """
    mime = block.get("mime_type")
    try:
        if block.get("type") == "image_url":
            inner = block.get("image_url")
            url = inner.get("url") if isinstance(inner, Mapping) else inner
            if not isinstance(url, str):
                raise ValueError("an image_url block needs image_url.url")
            return ImagePart.from_url(url)
        source = block.get("source")
        if isinstance(source, Mapping):  # Anthropic's shape
            if source.get("type") == "base64":
                return ImagePart.from_source(_b64(source.get("data")), source.get("media_type"))
            if source.get("type") == "url" and isinstance(source.get("url"), str):
                return ImagePart.from_url(source["url"])
            raise ValueError(f"unsupported image source type {source.get('type')!r}")
        if block.get("base64") is not None:
            return ImagePart.from_source(_b64(block["base64"]), mime)
        if block.get("source_type") == "base64":
            return ImagePart.from_source(_b64(block.get("data")), mime)
        url = block.get("url")
        if isinstance(url, str):
            return ImagePart.from_url(url, mime)
        if block.get("file_id") or (block.get("id") and block.get("source_type") == "id"):
            raise UnsupportedFeatureError(f"{where}: fmclient cannot send an image by provider file id")
        raise ValueError("an image block needs 'base64' or 'url'")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise ValueError("image base64 data must be a str")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"image data is not valid base64: {exc}") from None


# -- fmclient answers -> LangChain messages --------------------------------------------------------
def _response_metadata(completion: Completion) -> dict[str, Any]:
    return {
        "model_name": completion.model,
        "fmclient_provider": completion.provider,
        "finish_reason": completion.finish_reason,
    }


def _state_kwargs(message: Message) -> dict[str, Any]:
    if not message.provider_state:
        return {}
    return {PROVIDER_STATE_KEY: _to_json_safe(message.provider_state)}


def to_ai_message(completion: Completion) -> AIMessage:
    """A Completion as an AIMessage: text, tool calls, usage, and provider state to send back."""
    return AIMessage(
        content=completion.text,
        tool_calls=[
            {"name": c.name, "args": dict(c.arguments), "id": c.id, "type": "tool_call"} for c in completion.tool_calls
        ],
        usage_metadata=usage_metadata(completion.usage),
        response_metadata=_response_metadata(completion),
        additional_kwargs=_state_kwargs(completion.message),
    )


def _chunk_message(chunk: fmclient.Chunk) -> AIMessageChunk | None:
    if not chunk.text and not chunk.tool_calls:
        return None
    return AIMessageChunk(
        content=chunk.text,
        tool_call_chunks=[
            tool_call_chunk(name=d.name, args=d.arguments, id=d.id, index=d.index) for d in chunk.tool_calls
        ],
    )


def _last_chunk(completion: Completion) -> ChatGenerationChunk:
    """The stream's closing chunk: usage, finish reason, model and provider state, once."""
    message = AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(completion.usage),
        response_metadata=_response_metadata(completion),
        additional_kwargs=_state_kwargs(completion.message),
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message, generation_info={"finish_reason": completion.finish_reason})


# -- tools -------------------------------------------------------------------------------------------
def _tool_spec(tool: Any) -> dict[str, Any]:
    """Any tool shape LangChain accepts (BaseTool, Pydantic model, TypedDict, typed function, OpenAI or
    Anthropic dict) as the JSON Schema tool fmclient takes."""
    function = convert_to_openai_tool(tool)["function"]
    return {
        "name": function["name"],
        "description": function.get("description", ""),
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
    }


def _tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]]) -> str:
    """LangChain's tool_choice values as fmclient's: "auto", "none", "required" or a tool name."""
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return str(choice)
    if isinstance(choice, str):
        return choice
    if isinstance(choice, Mapping):  # {"type": "function", "function": {"name": ...}} or {"type": "tool", "name": ...}
        inner = choice.get("function") if isinstance(choice.get("function"), Mapping) else choice
        if choice.get("type") == "any":
            return "required"
        if choice.get("type") in ("auto", "none"):
            return str(choice["type"])
        name = inner.get("name") if isinstance(inner, Mapping) else None
        if isinstance(name, str):
            return name
    raise ValueError(
        f"tool_choice must be 'auto', 'any', 'required', 'none', True or a tool name, got {choice!r} "
        f"(tools: {[t['name'] for t in tools]})"
    )


# -- the client behind a model -----------------------------------------------------------------------
class _ClientHolder(BaseModel):
    """Fields and lazy Client shared by the chat and the embeddings model."""

    client: Any = Field(default=None, exclude=True)
    """An ``fmclient.Client`` to use; when None, one is built from fmclient's configuration."""
    api_key: SecretStr | None = None
    """A key for the provider the model resolves to (otherwise the provider's own variable is read)."""
    base_url: str | None = None
    """A base URL for the provider the model resolves to."""
    config_path: str | None = None
    """An fmclient TOML config file to read instead of the usual search."""

    _built: Client | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _one_source_of_settings(self) -> Any:
        if self.client is not None:
            if not isinstance(self.client, Client):
                raise TypeError(f"client must be an fmclient.Client, not {type(self.client).__name__}")
            given = [n for n in ("api_key", "base_url", "config_path") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} cannot be combined with client=: configure the Client instead")
        return self

    def _fm_client(self, model: str | None) -> Client:
        if self.client is not None:
            return cast(Client, self.client)
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build(model)
        return self._built

    def _build(self, model: str | None) -> Client:
        client = Client(config_path=self.config_path)
        if self.api_key is None and self.base_url is None:
            return client
        # The key and URL belong to the provider this model resolves to under the configuration.
        provider = client.resolve(model).provider
        table: dict[str, Any] = {}
        if self.api_key is not None:
            table["api_key"] = self.api_key.get_secret_value()
        if self.base_url is not None:
            table["base_url"] = self.base_url
        return Client(config_path=self.config_path, providers={provider: table})


def _env_model(values: Any, variable: str) -> Any:
    """``model`` defaults to fmclient's own variable when no client is given (the same precedence
    the Client would apply: environment over config file)."""
    import os

    if isinstance(values, dict) and values.get("model") is None and values.get("client") is None:
        found = os.environ.get(variable)
        if found:
            values = {**values, "model": found}
    return values


# -- the chat model ----------------------------------------------------------------------------------
class ChatFMClient(_ClientHolder, BaseChatModel):  # type: ignore[misc]
    """An fmclient model as a LangChain chat model.

    ``model`` is an fmclient alias or ``provider/model-id`` (None: fmclient's configured default).
    Sampling settings, ``timeout`` (a whole-call deadline), ``max_retries`` and ``fallbacks`` go to
    fmclient; ``model_kwargs`` are passed to the provider unchanged.

    An AIMessage it returns keeps the provider's opaque state (thinking blocks, thought signatures)
    in ``additional_kwargs["fmclient_provider_state"]``, so sending the message back in a later turn
    replays it exactly.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    fallbacks: list[str] | None = None
    streaming: bool = False
    """When True, ``invoke`` streams under the hood (callbacks see tokens as they arrive)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Provider options, passed through fmclient to the provider unchanged."""

    @model_validator(mode="before")
    @classmethod
    def _model_from_env(cls, values: Any) -> Any:
        return _env_model(values, "FMCLIENT_MODEL")

    # -- LangChain's bookkeeping --------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "fmclient-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "stop": self.stop,
            "fallbacks": self.fallbacks,
            "model_kwargs": self.model_kwargs,
        }

    @classmethod
    def is_lc_serializable(cls) -> bool:
        # langchain_core.load only rebuilds classes on LangChain's own allowlist, so a dumped
        # ChatFMClient could never be loaded back: it declares itself not serializable.
        return False

    def _model_name(self, override: Any = None) -> str:
        if isinstance(override, str) and override:
            return override
        if self.model:
            return self.model
        return self._fm_client(None).settings.default_model

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        name = self._model_name(kwargs.get("model"))
        try:
            provider = self._fm_client(self.model).resolve(name).provider
        except fmclient.FMClientError:
            provider = "fmclient"  # a name the configuration cannot resolve still gets traced
        params = LangSmithParams(ls_provider=provider, ls_model_name=name, ls_model_type="chat")
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, (int, float)):
            params["ls_temperature"] = float(temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # -- one call's arguments -----------------------------------------------------------------------
    def _call_args(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Client, list[Message], dict[str, Any]]:
        options = dict(kwargs)
        options.pop(_KEEP_UNPARSED, None)  # with_structured_output's marker, not a provider option
        args: dict[str, Any] = {
            "model": options.pop("model", None) or self.model,
            "max_tokens": options.pop("max_tokens", self.max_tokens),
            "temperature": options.pop("temperature", self.temperature),
            "top_p": options.pop("top_p", self.top_p),
            "stop": (stop if stop is not None else self.stop) or None,
            "timeout": options.pop("timeout", self.timeout),
            "max_retries": options.pop("max_retries", self.max_retries),
            "fallbacks": options.pop("fallbacks", self.fallbacks),
            "tools": options.pop("tools", None) or None,
            "tool_choice": options.pop("tool_choice", None),
            "response_format": options.pop("response_format", None),
        }
        call = {k: v for k, v in args.items() if v is not None}
        # Anything else LangChain was given for this call is a provider option: sent, never dropped.
        call.update({**self.model_kwargs, **options})
        return self._fm_client(self.model), to_fmclient_messages(messages), call

    # -- calls ----------------------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        client, prompt, call = self._call_args(messages, stop, kwargs)
        try:
            return _chat_result(client.complete(prompt, **call))
        except StructuredOutputError as error:
            if not kwargs.get(_KEEP_UNPARSED):
                raise
            return _unparsed_result(error)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        client, prompt, call = self._call_args(messages, stop, kwargs)
        try:
            return _chat_result(await client.acomplete(prompt, **call))
        except StructuredOutputError as error:
            if not kwargs.get(_KEEP_UNPARSED):
                raise
            return _unparsed_result(error)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        client, prompt, call = self._call_args(messages, stop, kwargs)
        try:
            with client.stream(prompt, **call) as stream:
                for chunk in stream:
                    message = _chunk_message(chunk)
                    if message is None:
                        continue
                    generation = ChatGenerationChunk(message=message)
                    if run_manager is not None:
                        run_manager.on_llm_new_token(chunk.text, chunk=generation)
                    yield generation
                completion = stream.completion
        except StructuredOutputError as error:
            if not kwargs.get(_KEEP_UNPARSED):
                raise
            if error.completion is None:  # tool arguments that are not JSON: the chunks carried them
                yield _unparsed_last_chunk(error)
                return
            completion = error.completion  # the text went out chunk by chunk; usage and the rest follow
        yield _last_chunk(completion)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        client, prompt, call = self._call_args(messages, stop, kwargs)
        try:
            async with client.astream(prompt, **call) as stream:
                async for chunk in stream:
                    message = _chunk_message(chunk)
                    if message is None:
                        continue
                    generation = ChatGenerationChunk(message=message)
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(chunk.text, chunk=generation)
                    yield generation
                completion = await stream.get_completion()
        except StructuredOutputError as error:
            if not kwargs.get(_KEEP_UNPARSED):
                raise
            if error.completion is None:
                yield _unparsed_last_chunk(error)
                return
            completion = error.completion
        yield _last_chunk(completion)

    # -- tools and structured output ---------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools in any shape LangChain accepts; ``tool_choice`` is "auto", "any"/"required", "none",
        True (the one tool) or a tool name."""
        specs = [_tool_spec(t) for t in tools]
        if tool_choice is not None and tool_choice is not False:
            if tool_choice is True and len(specs) == 1:
                kwargs["tool_choice"] = specs[0]["name"]
            else:
                kwargs["tool_choice"] = _tool_choice(tool_choice, specs)
        return self.bind(tools=specs, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Replies parsed into ``schema``: a Pydantic model (v2 or v1), a TypedDict or a JSON Schema.

        ``method="json_schema"`` (default) uses fmclient's ``response_format``, which each provider
        maps to its native structured output; ``"function_calling"`` forces a tool call;
        ``"json_mode"`` asks for any JSON object (describe the keys in the prompt). ``strict`` is
        decided by fmclient's adapters from the schema (e.g. OpenAI's strict subset), so only None
        and the value the adapter would pick are meaningful here.
        """
        if kwargs:
            raise ValueError(f"with_structured_output got unexpected arguments: {sorted(kwargs)}")
        if method not in ("json_schema", "function_calling", "json_mode"):
            raise ValueError(f"method must be 'json_schema', 'function_calling' or 'json_mode', got {method!r}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace = {"ls_structured_output_format": {"kwargs": {"method": method, "strict": strict}, "schema": schema}}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            name = _tool_spec(schema)["name"]
            llm = self.bind_tools([schema], tool_choice=name, **trace)
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            # LangChain's tool parsers read only valid tool calls: one whose arguments were not JSON
            # would otherwise parse as None with no error.
            parser = RunnableLambda(_refuse_invalid_tool_calls) | parser
        else:
            json_schema = convert_to_json_schema(schema) if method == "json_schema" else {"type": "object"}
            llm = self.bind(response_format=json_schema, **trace)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        if not include_raw:
            return llm | parser
        # LangChain's include_raw contract: an unparsable reply is {"raw", "parsed": None,
        # "parsing_error"}, never an exception. fmclient checks structured output itself and raises,
        # so the model is told to hand back the unparsed reply, and LangChain's parser decides.
        llm = llm.bind(**{_KEEP_UNPARSED: True})
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks([unparsed], exception_key="parsing_error")


# A bound call argument that makes the chat model return a reply fmclient could not parse as
# structured output instead of raising (with_structured_output(include_raw=True) parses it itself).
_KEEP_UNPARSED = "fmclient_keep_unparsed"


def _refuse_invalid_tool_calls(message: Any) -> Any:
    if isinstance(message, AIMessage) and message.invalid_tool_calls and not message.tool_calls:
        invalid = message.invalid_tool_calls[0]
        why = invalid.get("error") or f"arguments are not a JSON object: {str(invalid.get('args'))[:200]!r}"
        raise OutputParserException(f"tool call {invalid.get('name')!r} is invalid: {why}")
    return message


def _unparsed_result(error: StructuredOutputError) -> ChatResult:
    """The reply behind a structured-output failure, as LangChain's raw message."""
    if error.completion is not None:
        return _chat_result(error.completion)
    # The adapter could not even build a completion (a forced tool call's arguments are not JSON):
    # the arguments text is all there is, as LangChain's invalid tool call.
    message = AIMessage(
        content="",
        invalid_tool_calls=[
            {"type": "invalid_tool_call", "name": None, "args": error.text, "id": None, "error": str(error)}
        ],
        response_metadata={"model_name": error.model, "fmclient_provider": error.provider},
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _unparsed_last_chunk(error: StructuredOutputError) -> ChatGenerationChunk:
    """A stream's closing chunk when its tool arguments were not JSON: LangChain turns the
    arguments the chunks carried into an invalid tool call."""
    message = AIMessageChunk(
        content="",
        response_metadata={"model_name": error.model, "fmclient_provider": error.provider},
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message)


def _chat_result(completion: Completion) -> ChatResult:
    generation = ChatGeneration(
        message=to_ai_message(completion), generation_info={"finish_reason": completion.finish_reason}
    )
    return ChatResult(generations=[generation], llm_output={"model_name": completion.model})


# -- embeddings --------------------------------------------------------------------------------------
class FMClientEmbeddings(_ClientHolder, Embeddings):
    """An fmclient embedding model as LangChain ``Embeddings``.

    ``model`` is an fmclient alias or ``provider/model-id`` (None: fmclient's configured default
    embedding model). ``model_kwargs`` are passed to the provider unchanged.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _model_from_env(cls, values: Any) -> Any:
        return _env_model(values, "FMCLIENT_EMBEDDING_MODEL")

    def _embed_args(self) -> dict[str, Any]:
        args = {"model": self.model, "timeout": self.timeout, "max_retries": self.max_retries}
        return {**{k: v for k, v in args.items() if v is not None}, **self.model_kwargs}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        result = self._fm_client(self.model).embed(list(texts), **self._embed_args())
        return [list(map(float, v)) for v in result.vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        result = await self._fm_client(self.model).aembed(list(texts), **self._embed_args())
        return [list(map(float, v)) for v in result.vectors]

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
