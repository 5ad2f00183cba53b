"""The user API: one Client with sync and async twins, whatever provider answers.

A thin facade: each method checks nothing and decides nothing itself, it hands its arguments to
the capability that does the work (fmclient._chat, _embeddings, _images, _speech, batch, provider_batch),
all running on one call engine (fmclient._engine). The client knows nothing of any SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fmclient import _chat, _validation
from fmclient._engine import Attempt, Engine
from fmclient.cache import ResponseCache, cache_from_settings
from fmclient.config import Settings, Target, load_settings

if TYPE_CHECKING:
    import os
    from decimal import Decimal

    from fmclient._stream import AsyncStream, Stream
    from fmclient.batch import BatchResult
    from fmclient.circuit import CircuitBreaker
    from fmclient.hooks import Hook
    from fmclient.limits import RateLimit
    from fmclient.provider_batch import BatchJob
    from fmclient.providers import Provider
    from fmclient.tool_loop import AsyncRunStream, Run, RunStream
    from fmclient.types import Completion, Embeddings, Images, Speech, TokenCount, ToolCall, Transcription

__all__ = ["Attempt", "Client"]


class Client:
    """A client for every configured provider. Build one and reuse it: SDK clients inside are
    built once per provider and keep their connection pools.

    Arguments override environment variables, which override the config file, which overrides
    built-in defaults. ``providers`` and ``aliases`` take the same shape as the config file's
    ``[providers.<name>]`` and ``[aliases]`` tables.

    ``max_cost`` (USD, or the config's ``[budget]`` table) caps what this client may spend: see
    :mod:`fmclient.budget`. It needs ``fmclient[cost]``.

    ``cache`` (or the config's ``[cache]`` table) answers identical requests from a response cache:
    ``True`` for in-memory, a table's keys, or a :class:`~fmclient.cache.ResponseCache`. Off by
    default; see :mod:`fmclient.cache`.

    ``shared`` (a ``redis://`` url, or the config's ``[shared]`` table) shares rate limits, the
    budget and circuit breakers with every process using the same Redis: see :mod:`fmclient.shared`.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        embedding_model: str | None = None,
        image_model: str | None = None,
        config_path: str | None = None,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        aliases: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        max_retry_wait: float | None = None,
        env: Mapping[str, str] | None = None,
        max_cost: float | str | Decimal | None = None,
        hooks: Sequence[Hook] | None = None,
        telemetry: bool | None = None,
        cache: bool | Mapping[str, Any] | ResponseCache | None = None,
        rate_limits: Mapping[str, Mapping[str, int] | RateLimit] | None = None,
        shared: str | Mapping[str, Any] | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            "default_model": model,
            "default_embedding_model": embedding_model,
            "default_image_model": image_model,
            "max_retries": _validation.check_max_retries(max_retries),
            "timeout": _validation.check_timeout(timeout),
            "max_retry_wait": max_retry_wait,
        }
        # Passed through as given: the config layer checks their shape like a config file's.
        for key, value in (
            ("providers", providers),
            ("aliases", aliases),
            ("fallbacks", fallbacks),
            ("rate_limits", rate_limits),
            ("shared", shared),
        ):
            if value is not None:
                overrides[key] = value
        if max_cost is not None:
            overrides["budget"] = {"max_cost": max_cost}
        if cache is not None and not isinstance(cache, ResponseCache):
            overrides["cache"] = ({"backend": "memory"} if cache else {}) if isinstance(cache, bool) else cache
        settings: Settings = load_settings(env=env, config_path=config_path, overrides=overrides)
        all_hooks: list[Hook] = list(hooks or ())
        if telemetry is None:  # not passed: the config file's `telemetry` or FMCLIENT_TELEMETRY
            telemetry = settings.telemetry
        if telemetry:
            # Imported only when asked for: opentelemetry-api is the [otel] extra.
            from fmclient.telemetry import OpenTelemetryHook

            all_hooks.append(OpenTelemetryHook())
        if isinstance(cache, ResponseCache):  # one passed in is the caller's to close
            self._engine = Engine(settings, all_hooks, cache, owns_cache=False)
        else:
            self._engine = Engine(settings, all_hooks, cache_from_settings(settings.cache), owns_cache=True)

    @property
    def settings(self) -> Settings:
        return self._engine.settings

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache, or None when calls are not cached."""
        return self._engine.cache

    @property
    def spent(self) -> Decimal | None:
        """USD spent by this client's calls so far (known costs only), or None without a budget."""
        budget = self._engine.budget
        return None if budget is None else budget.spent

    @property
    def max_cost(self) -> Decimal | None:
        budget = self._engine.budget
        return None if budget is None else budget.max_cost

    def add_hook(self, hook: Hook) -> None:
        """Register a hook for every later call (see :mod:`fmclient.hooks`)."""
        self._engine.add_hook(hook)

    def __repr__(self) -> str:
        return f"<fmclient.Client default_model={self.settings.default_model!r}>"

    def provider(self, name: str) -> Provider:
        """The adapter instance for a named provider, built on first use."""
        return self._engine.provider(name)

    def resolve(self, model: str | None) -> Target:
        """Where a model name goes: provider and model id (aliases and defaults applied)."""
        return self._engine.resolve(model)

    def breaker(self, provider: str) -> CircuitBreaker | None:
        """The provider's circuit breaker, when ``[circuit_breaker]`` is configured."""
        return self._engine.breaker(provider)

    # -- complete and stream ------------------------------------------------------------------
    def complete(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        audio: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        output_retries: int = 0,
        **provider_options: Any,
    ) -> Completion:
        """Ask a model and wait for the whole answer.

        With ``response_format``, ``output_retries=n`` asks again (up to n times) while the reply
        does not validate, sending back only the last failed reply and its errors; the answer's
        usage and cost cover every attempt, and so do those of the ``StructuredOutputError`` raised
        when the retries run out. ``timeout`` then covers every attempt.

        ``audio={"voice": "alloy", "format": "wav"}`` asks a model that can speak (OpenAI's audio
        models) for a spoken answer as well: ``Completion.audio``, its transcript in ``text``.
        """
        params = {
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "reasoning": reasoning,
            "audio": audio,
        }
        if output_retries:
            return _chat.complete_reasking(
                self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params, output_retries
            )
        return _chat.complete(self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params)

    async def acomplete(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        audio: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        output_retries: int = 0,
        **provider_options: Any,
    ) -> Completion:
        """The async twin of :meth:`complete`."""
        params = {
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "reasoning": reasoning,
            "audio": audio,
        }
        if output_retries:
            return await _chat.acomplete_reasking(
                self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params, output_retries
            )
        return await _chat.acomplete(
            self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params
        )

    def stream(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        audio: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Stream:
        """Stream the answer: iterate for chunks, then read ``.completion``.

        Retries and fallbacks happen only before the first chunk reaches the caller; a failure
        after that raises a typed error whose ``partial_text`` holds what was received.
        """
        params = {
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "reasoning": reasoning,
            "audio": audio,
        }
        return _chat.stream(self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params)

    def astream(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Any = None,
        reasoning: str | int | None = None,
        audio: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> AsyncStream:
        """The async twin of :meth:`stream`: ``async for chunk in client.astream(...)``.

        With a cache that does I/O (disk, Redis), the cache lookup and then the budget check
        happen when iteration starts, off the event loop; bad input still raises here.
        """
        params = {
            "system": system,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "reasoning": reasoning,
            "audio": audio,
        }
        return _chat.astream(self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params)

    # -- tool loops ----------------------------------------------------------------------------------
    def run(
        self,
        prompt: Any,
        *,
        tools: Sequence[Any],
        model: str | None = None,
        max_steps: int = 10,
        stop_when: Callable[[Run], bool] | None = None,
        approve: Callable[[ToolCall], Any] | None = None,
        parallel_tools: bool = True,
        tool_timeout: float | None = None,
        on_tool_error: str = "return",
        max_tool_failures: int | None = 3,
        timeout: float | None = None,
        **call_args: Any,
    ) -> Run:
        """Call the model, run the tools it asks for and send the results back, until it answers
        (or ``max_steps``, ``stop_when``, a final tool): see :mod:`fmclient.tool_loop`.

        ``timeout`` is the whole run's deadline; ``call_args`` are :meth:`complete`'s keyword
        arguments (system, max_tokens, reasoning, ...), used on every step.
        """
        from fmclient import tool_loop

        return tool_loop.run(
            self.complete,
            self._engine.hooks,
            prompt,
            tools=tools,
            model=model,
            max_steps=max_steps,
            stop_when=stop_when,
            approve=approve,
            parallel_tools=parallel_tools,
            tool_timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_tool_failures=max_tool_failures,
            timeout=timeout,
            **call_args,
        )

    async def arun(
        self,
        prompt: Any,
        *,
        tools: Sequence[Any],
        model: str | None = None,
        max_steps: int = 10,
        stop_when: Callable[[Run], bool] | None = None,
        approve: Callable[[ToolCall], Any] | None = None,
        parallel_tools: bool = True,
        tool_timeout: float | None = None,
        on_tool_error: str = "return",
        max_tool_failures: int | None = 3,
        timeout: float | None = None,
        **call_args: Any,
    ) -> Run:
        """The async twin of :meth:`run`: async tools are awaited, sync ones run in worker threads."""
        from fmclient import tool_loop

        return await tool_loop.arun(
            self.acomplete,
            self._engine.hooks,
            prompt,
            tools=tools,
            model=model,
            max_steps=max_steps,
            stop_when=stop_when,
            approve=approve,
            parallel_tools=parallel_tools,
            tool_timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_tool_failures=max_tool_failures,
            timeout=timeout,
            **call_args,
        )

    def run_stream(
        self,
        prompt: Any,
        *,
        tools: Sequence[Any],
        model: str | None = None,
        max_steps: int = 10,
        stop_when: Callable[[Run], bool] | None = None,
        approve: Callable[[ToolCall], Any] | None = None,
        parallel_tools: bool = True,
        tool_timeout: float | None = None,
        on_tool_error: str = "return",
        max_tool_failures: int | None = 3,
        timeout: float | None = None,
        **call_args: Any,
    ) -> RunStream:
        """:meth:`run`, streamed: iterate for events (text and reasoning deltas, tool calls, tool
        results, step ends), then read ``.run``."""
        from fmclient import tool_loop

        return tool_loop.run_stream(
            self.stream,
            self._engine.hooks,
            prompt,
            tools=tools,
            model=model,
            max_steps=max_steps,
            stop_when=stop_when,
            approve=approve,
            parallel_tools=parallel_tools,
            tool_timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_tool_failures=max_tool_failures,
            timeout=timeout,
            **call_args,
        )

    def arun_stream(
        self,
        prompt: Any,
        *,
        tools: Sequence[Any],
        model: str | None = None,
        max_steps: int = 10,
        stop_when: Callable[[Run], bool] | None = None,
        approve: Callable[[ToolCall], Any] | None = None,
        parallel_tools: bool = True,
        tool_timeout: float | None = None,
        on_tool_error: str = "return",
        max_tool_failures: int | None = 3,
        timeout: float | None = None,
        **call_args: Any,
    ) -> AsyncRunStream:
        """The async twin of :meth:`run_stream`: ``async for event in client.arun_stream(...)``."""
        from fmclient import tool_loop

        return tool_loop.arun_stream(
            self.astream,
            self._engine.hooks,
            prompt,
            tools=tools,
            model=model,
            max_steps=max_steps,
            stop_when=stop_when,
            approve=approve,
            parallel_tools=parallel_tools,
            tool_timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_tool_failures=max_tool_failures,
            timeout=timeout,
            **call_args,
        )

    # -- count tokens ------------------------------------------------------------------------------
    def count_tokens(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        check: bool = False,
        timeout: float | None = None,
        **provider_options: Any,
    ) -> TokenCount:
        """Count a prompt's input tokens without generating: the provider's count API (Anthropic,
        Gemini, Bedrock), tiktoken offline (OpenAI, ``fmclient[tokens]``) or the model's own
        tokenizer (llama.cpp); elsewhere an estimate. ``TokenCount.exact`` says which.

        ``check=True`` raises :class:`ContextWindowExceededError` when the count exceeds the
        model's context window (from its profile), so a prompt that cannot fit is never sent.
        """
        return _chat.count_tokens(self._engine, prompt, model, system, tools, check, timeout, provider_options)

    async def acount_tokens(
        self,
        prompt: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        check: bool = False,
        timeout: float | None = None,
        **provider_options: Any,
    ) -> TokenCount:
        """The async twin of :meth:`count_tokens`."""
        return await _chat.acount_tokens(self._engine, prompt, model, system, tools, check, timeout, provider_options)

    # -- embed -------------------------------------------------------------------------------------
    def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **provider_options: Any,
    ) -> Embeddings:
        """Embed texts; vectors come back in input order.

        The input goes out in the batches the provider takes, each under its own retries within
        the one deadline: a retry re-sends only the batch that failed.
        """
        from fmclient import _embeddings  # each capability is loaded on first use

        return _embeddings.embed(self._engine, texts, model, timeout, max_retries, provider_options)

    async def aembed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **provider_options: Any,
    ) -> Embeddings:
        """The async twin of :meth:`embed`."""
        from fmclient import _embeddings

        return await _embeddings.aembed(self._engine, texts, model, timeout, max_retries, provider_options)

    # -- batch -------------------------------------------------------------------------------------
    def batch(
        self,
        inputs: Iterable[Any],
        *,
        model: str | None = None,
        concurrency: int = 8,
        output: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        redo_failed: bool = False,
        **call_args: Any,
    ) -> BatchResult:
        """Complete many prompts with bounded concurrency; resumable through ``output`` (JSONL).

        See :mod:`fmclient.batch`. ``call_args`` are :meth:`complete`'s keyword arguments.
        """
        from fmclient.batch import run_batch

        return run_batch(
            self.complete,
            inputs,
            model=model,
            concurrency=concurrency,
            output=output,
            progress=progress,
            redo_failed=redo_failed,
            call_args=call_args,
            resolve=self.resolve,
        )

    async def abatch(
        self,
        inputs: Iterable[Any],
        *,
        model: str | None = None,
        concurrency: int = 8,
        output: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        redo_failed: bool = False,
        **call_args: Any,
    ) -> BatchResult:
        """The async twin of :meth:`batch` (asyncio tasks over :meth:`acomplete`)."""
        from fmclient.batch import arun_batch

        return await arun_batch(
            self.acomplete,
            inputs,
            model=model,
            concurrency=concurrency,
            output=output,
            progress=progress,
            redo_failed=redo_failed,
            call_args=call_args,
            resolve=self.resolve,
        )

    # -- provider batch APIs ----------------------------------------------------------------------
    def submit_batch(self, inputs: Iterable[Any], *, model: str | None = None, **call_args: Any) -> BatchJob:
        """Submit prompts as one provider batch job (about half price, asynchronous): see
        :mod:`fmclient.provider_batch`. ``call_args`` are complete()'s (system, max_tokens...)."""
        from fmclient.provider_batch import submit_batch

        return submit_batch(self._engine, inputs, model, call_args)

    def batch_job(self, job_id: str, *, model: str | None = None, response_format: Any = None) -> BatchJob:
        """Re-attach to a job submitted earlier (by any process) with the same ``model`` (and the
        same ``response_format``, so its answers are checked and parsed as complete() would)."""
        from fmclient.provider_batch import batch_job

        return batch_job(self._engine, job_id, model, response_format)

    # -- generate images ---------------------------------------------------------------------------
    def generate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        n: int = 1,
        negative_prompt: str | None = None,
        seed: int | None = None,
        quality: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Images:
        """Generate ``n`` images from a text prompt (default model: ``default_image_model``).

        ``size`` is ``"WIDTHxHEIGHT"``, an aspect ratio (``"16:9"``, for Imagen) or ``"auto"``; a
        size, count, negative prompt, seed or quality the model cannot take is refused before
        sending. Retries, the deadline, fallbacks and circuit breakers work as for :meth:`complete`.
        """
        from fmclient import _images

        params = {"size": size, "n": n, "negative_prompt": negative_prompt, "seed": seed, "quality": quality}
        return _images.generate_image(
            self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params
        )

    async def agenerate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        n: int = 1,
        negative_prompt: str | None = None,
        seed: int | None = None,
        quality: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Images:
        """The async twin of :meth:`generate_image`."""
        from fmclient import _images

        params = {"size": size, "n": n, "negative_prompt": negative_prompt, "seed": seed, "quality": quality}
        return await _images.agenerate_image(
            self._engine, prompt, model, fallbacks, max_retries, timeout, provider_options, params
        )

    # -- transcription and speech ------------------------------------------------------------------
    def transcribe(
        self,
        audio: Any,
        *,
        model: str,
        language: str | None = None,
        prompt: str | None = None,
        mime_type: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Transcription:
        """Transcribe audio: bytes, a path, a ``data:`` URI or a binary file (WAV, MP3, FLAC, OGG,
        WebM, M4A/MP4, AAC, AIFF; the type is read from the bytes, else ``mime_type``).

        ``language`` (ISO-639-1, "en") and ``prompt`` (names, spelling) help the model. A format
        or a file size the model cannot take is refused before sending; retries, the deadline,
        fallbacks (to another provider's transcription model) and hooks work as for :meth:`complete`.
        """
        from fmclient import _speech

        params = {"mime_type": mime_type, "language": language, "prompt": prompt}
        return _speech.transcribe(self._engine, audio, model, fallbacks, max_retries, timeout, provider_options, params)

    async def atranscribe(
        self,
        audio: Any,
        *,
        model: str,
        language: str | None = None,
        prompt: str | None = None,
        mime_type: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Transcription:
        """The async twin of :meth:`transcribe`."""
        from fmclient import _speech

        params = {"mime_type": mime_type, "language": language, "prompt": prompt}
        return await _speech.atranscribe(
            self._engine, audio, model, fallbacks, max_retries, timeout, provider_options, params
        )

    def speak(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        format: str | None = None,
        instructions: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Speech:
        """Speak ``text`` in ``voice``: the audio file's bytes in ``Speech.data``.

        ``format`` is the file format ("mp3", "wav", "opus"...; None: the model's default, mp3 on
        OpenAI, WAV on Gemini); ``instructions`` a speaking style ("calm and slow"). What the model
        cannot make is refused before sending; retries, fallbacks and hooks as for :meth:`complete`.
        """
        from fmclient import _speech

        params = {"voice": voice, "format": format, "instructions": instructions}
        return _speech.speak(self._engine, text, model, fallbacks, max_retries, timeout, provider_options, params)

    async def aspeak(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        format: str | None = None,
        instructions: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        fallbacks: Sequence[str] | None = None,
        **provider_options: Any,
    ) -> Speech:
        """The async twin of :meth:`speak`."""
        from fmclient import _speech

        params = {"voice": voice, "format": format, "instructions": instructions}
        return await _speech.aspeak(
            self._engine, text, model, fallbacks, max_retries, timeout, provider_options, params
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._engine.close()

    async def aclose(self) -> None:
        await self._engine.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
