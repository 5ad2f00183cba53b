"""The clients a user compares fmclient with, each driven the way its docs show, against the fake server.

``bench/run.py --scenario peers`` runs :func:`peer_worker` once per client and round, each in a
fresh process (one client's imports, patches and pools never touch another's), in alternating
order. A client gets the same request on every route: the model, system prompt, user message
and ``max_tokens`` of the other scenarios, with its retries off where it has a switch for them.

Each peer is a function ``(url) -> {route: Route}``; a route the client cannot take offline
against the fake server, or at all, says why instead of being left out. Peers are not
dependencies of fmclient: install them into a separate environment (``bench/README.md``). A
peer that is not installed is shown as such, with the import error.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

ANTHROPIC_MODEL = "claude-sonnet-4-6"
# A current model (gpt-4o retires 2027-01-14; OpenAI names gpt-6-luna its replacement). As a
# reasoning model it takes its output limit as max_completion_tokens and a system prompt as a
# developer message (fmclient's profile sends both so): every client on the OpenAI route sends
# that same Chat Completions request (fmclient with api="chat", not its default Responses API).
OPENAI_MODEL = "gpt-6-luna"
SYSTEM = "You are a terse assistant."
PROMPT = "Say something about foxes and dogs."
MAX_TOKENS = 256
API_KEY = "bench-key"
ROUTES = ("OpenAI", "Anthropic")

#: Peer -> (the module whose import is timed, the distribution whose version is shown).
PEERS: dict[str, tuple[str, str]] = {
    "fmclient": ("fmclient", "fmclient"),
    "official SDK": ("", ""),  # openai / anthropic, per route
    "LiteLLM": ("litellm", "litellm"),
    "aisuite": ("aisuite", "aisuite"),
    "any-llm": ("any_llm", "any-llm-sdk"),
}


@dataclass
class Route:
    """How one client makes one call on one route: each returns the answer's text (a stream: its
    number of text pieces), or is None with the reason in ``missing``."""

    complete: Callable[[], str] | None = None
    stream: Callable[[], int] | None = None
    # Builds its client inside the running event loop and returns the coroutine function to call.
    async_factory: (
        Callable[[], Awaitable[tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]]] | None
    ) = None
    missing: dict[str, str] | None = None


def _messages(system_in_messages: bool = True, route: str = "Anthropic") -> list[dict[str, str]]:
    user = {"role": "user", "content": PROMPT}
    role = "developer" if route == "OpenAI" else "system"
    return [{"role": role, "content": SYSTEM}, user] if system_in_messages else [user]


def _limit(route: str) -> dict[str, int]:
    """The output limit as the route's request names it."""
    return {"max_completion_tokens" if route == "OpenAI" else "max_tokens": MAX_TOKENS}


# -- fmclient ----------------------------------------------------------------------------------
def fmclient_routes(url: str) -> dict[str, Route]:
    from fmclient import Client

    def make() -> Any:
        return Client(
            providers={
                "anthropic": {"base_url": url, "api_key": API_KEY},
                "openai": {"base_url": url + "/v1", "api_key": API_KEY, "api": "chat"},
            }
        )

    client = make()
    routes = {}
    for route, model in (("OpenAI", f"openai/{OPENAI_MODEL}"), ("Anthropic", f"anthropic/{ANTHROPIC_MODEL}")):

        def complete(model: str = model) -> str:
            return str(client.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS).text)

        def stream(model: str = model) -> int:
            return sum(1 for c in client.stream(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS) if c.text)

        async def factory(model: str = model) -> Any:
            async_client = make()

            async def call() -> str:
                return str(
                    (await async_client.acomplete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)).text
                )

            return call, async_client.aclose

        routes[route] = Route(complete, stream, factory)
    return routes


# -- the official SDKs -----------------------------------------------------------------------
def sdk_routes(url: str) -> dict[str, Route]:
    """``create`` with typed responses, as their READMEs show; async on the SDK's aiohttp client,
    its fastest transport."""
    import anthropic
    import openai

    o = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    a = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    o_args = {"model": OPENAI_MODEL, **_limit("OpenAI"), "messages": _messages(route="OpenAI")}
    a_args = {"model": ANTHROPIC_MODEL, "system": SYSTEM, "max_tokens": MAX_TOKENS, "messages": _messages(False)}

    def o_stream() -> int:
        events = o.chat.completions.create(**o_args, stream=True, stream_options={"include_usage": True})
        return sum(1 for e in events if e.choices and e.choices[0].delta.content)

    def a_stream() -> int:
        events = a.messages.create(**a_args, stream=True)
        return sum(1 for e in events if e.type == "content_block_delta" and e.delta.text)

    async def o_factory() -> Any:
        client = openai.AsyncOpenAI(
            base_url=url + "/v1", api_key=API_KEY, max_retries=0, http_client=openai.DefaultAioHttpClient()
        )

        async def call() -> str:
            return str((await client.chat.completions.create(**o_args)).choices[0].message.content)

        return call, client.close

    async def a_factory() -> Any:
        client = anthropic.AsyncAnthropic(
            base_url=url, api_key=API_KEY, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
        )

        async def call() -> str:
            return str((await client.messages.create(**a_args)).content[0].text)

        return call, client.close

    return {
        "OpenAI": Route(
            lambda: str(o.chat.completions.create(**o_args).choices[0].message.content), o_stream, o_factory
        ),
        "Anthropic": Route(lambda: str(a.messages.create(**a_args).content[0].text), a_stream, a_factory),
    }


# -- LiteLLM -----------------------------------------------------------------------------------
def litellm_routes(url: str) -> dict[str, Route]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of its price map at import
    import litellm

    litellm.telemetry = False
    litellm.num_retries = 0
    routes = {}
    for route, model, base in (
        ("OpenAI", f"openai/{OPENAI_MODEL}", url + "/v1"),
        ("Anthropic", f"anthropic/{ANTHROPIC_MODEL}", url),
    ):
        args = {
            "model": model,
            "api_base": base,
            "api_key": API_KEY,
            **_limit(route),
            "messages": _messages(route=route),
        }

        def complete(args: dict[str, Any] = args) -> str:
            return str(litellm.completion(**args).choices[0].message.content)

        def stream(args: dict[str, Any] = args) -> int:
            return sum(1 for c in litellm.completion(**args, stream=True) if c.choices and c.choices[0].delta.content)

        async def factory(args: dict[str, Any] = args) -> Any:
            async def call() -> str:
                return str((await litellm.acompletion(**args)).choices[0].message.content)

            async def close() -> None:
                return None

            return call, close

        routes[route] = Route(complete, stream, factory)
    return routes


# -- aisuite -----------------------------------------------------------------------------------
def aisuite_routes(url: str) -> dict[str, Route]:
    import aisuite

    client = aisuite.Client(
        {"openai": {"api_key": API_KEY, "base_url": url + "/v1"}, "anthropic": {"api_key": API_KEY, "base_url": url}}
    )
    routes = {}
    for route, model in (("OpenAI", f"openai:{OPENAI_MODEL}"), ("Anthropic", f"anthropic:{ANTHROPIC_MODEL}")):
        args = {"model": model, **_limit(route), "messages": _messages(route=route)}

        def complete(args: dict[str, Any] = args) -> str:
            return str(client.chat.completions.create(**args).choices[0].message.content)

        def stream(args: dict[str, Any] = args) -> int:
            events = client.chat.completions.create(**args, stream=True)
            return sum(1 for c in events if c.choices and c.choices[0].delta.content)

        async_client = getattr(aisuite, "AsyncClient", None)
        factory = None
        missing = None
        if async_client is None:
            missing = {"async": f"aisuite {_version('aisuite')} has no async client"}
        else:

            async def factory(args: dict[str, Any] = args, make: Any = async_client) -> Any:  # type: ignore[misc]
                ac = make(
                    {
                        "openai": {"api_key": API_KEY, "base_url": url + "/v1"},
                        "anthropic": {"api_key": API_KEY, "base_url": url},
                    }
                )

                async def call() -> str:
                    return str((await ac.chat.completions.create(**args)).choices[0].message.content)

                async def close() -> None:
                    return None

                return call, close

        routes[route] = Route(complete, stream, factory, missing)
    return routes


# -- any-llm -----------------------------------------------------------------------------------
def any_llm_routes(url: str) -> dict[str, Route]:
    """One ``AnyLLM.create(provider, ...)`` per route, reused for every call: its docs' way for
    repeated calls (the module-level ``completion()`` builds a provider client per call, ~50 ms)."""
    import any_llm

    routes = {}
    for route, provider, model, base in (
        ("OpenAI", "openai", OPENAI_MODEL, url + "/v1"),
        ("Anthropic", "anthropic", ANTHROPIC_MODEL, url),
    ):
        llm = any_llm.AnyLLM.create(provider, api_key=API_KEY, api_base=base, max_retries=0)
        args = {"model": model, **_limit(route), "messages": _messages(route=route)}

        def complete(llm: Any = llm, args: dict[str, Any] = args) -> str:
            return str(llm.completion(**args).choices[0].message.content)

        def stream(llm: Any = llm, args: dict[str, Any] = args) -> int:
            return sum(1 for c in llm.completion(**args, stream=True) if c.choices and c.choices[0].delta.content)

        async def factory(provider: str = provider, base: str = base, args: dict[str, Any] = args) -> Any:
            allm = any_llm.AnyLLM.create(provider, api_key=API_KEY, api_base=base, max_retries=0)

            async def call() -> str:
                return str((await allm.acompletion(**args)).choices[0].message.content)

            async def close() -> None:
                return None

            return call, close

        routes[route] = Route(complete, stream, factory)
    return routes


# -- tool loops (bench/run.py --scenario loop) -------------------------------------------------
# A run: the fake server answers a request with tools with two calls of ``noop`` until four tool
# results are in the history, then with its plain answer: three model calls, four tool calls.
LOOP_STEPS = 3


def noop(x: int) -> int:
    """Do nothing.

    Args:
        x: any number
    """
    return x


#: ``noop`` in OpenAI's tool shape, for the loops that take a schema.
NOOP_TOOL = {
    "type": "function",
    "function": {
        "name": "noop",
        "description": "Do nothing.",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    },
}

#: A loop: one run of it returns (the final answer's text, the number of model calls it made).
Loop = Callable[[], tuple[str, int]]


def openai_sdk_loop(url: str) -> Loop:
    """The loop an OpenAI SDK user writes (the SDK's function-calling guide): call, run each tool
    call with its JSON arguments, append the results, call again."""
    import json

    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)

    def run() -> tuple[str, int]:
        messages: list[Any] = [{"role": "user", "content": PROMPT}]
        reply = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=[NOOP_TOOL])
        calls = 1
        while (message := reply.choices[0].message).tool_calls:
            messages.append(message)
            for call in message.tool_calls:
                result = noop(**json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
            reply = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=[NOOP_TOOL])
            calls += 1
        return str(message.content), calls

    return run


def litellm_loop(url: str) -> Loop:
    """LiteLLM has no tool loop of its own (its MCP helpers list and call an MCP server's tools,
    the loop is still the user's): the loop of its function-calling docs over
    ``litellm.completion``."""
    import json

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of its price map at import
    import litellm

    litellm.telemetry = False
    litellm.num_retries = 0
    args = {"model": f"openai/{OPENAI_MODEL}", "api_base": url + "/v1", "api_key": API_KEY, "tools": [NOOP_TOOL]}

    def run() -> tuple[str, int]:
        messages: list[Any] = [{"role": "user", "content": PROMPT}]
        reply = litellm.completion(messages=messages, **args)
        calls = 1
        while (message := reply.choices[0].message).tool_calls:
            messages.append(message)
            for call in message.tool_calls:
                result = noop(**json.loads(call.function.arguments))
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "name": call.function.name, "content": json.dumps(result)}
                )
            reply = litellm.completion(messages=messages, **args)
            calls += 1
        return str(message.content), calls

    return run


def aisuite_loop(url: str) -> Loop:
    """aisuite's own loop: ``tools=[function]`` with ``max_turns`` runs the calls (one at a time,
    arguments checked against the function's pydantic model) and sends the results back."""
    import aisuite

    client = aisuite.Client({"openai": {"api_key": API_KEY, "base_url": url + "/v1", "max_retries": 0}})

    def run() -> tuple[str, int]:
        messages = [{"role": "user", "content": PROMPT}]
        reply = client.chat.completions.create(
            model=f"openai:{OPENAI_MODEL}", messages=messages, tools=[noop], max_turns=10
        )
        return str(reply.choices[0].message.content), len(reply.intermediate_responses) + 1

    return run


#: Peer -> its loop, for the loop scenario (fmclient's own sides are built there).
LOOPS: dict[str, Callable[[str], Loop]] = {
    "OpenAI SDK, hand-written loop": openai_sdk_loop,
    "aisuite, max_turns": aisuite_loop,
    "LiteLLM, hand-written loop": litellm_loop,
}


BUILDERS: dict[str, Callable[[str], dict[str, Route]]] = {
    "fmclient": fmclient_routes,
    "official SDK": sdk_routes,
    "LiteLLM": litellm_routes,
    "aisuite": aisuite_routes,
    "any-llm": any_llm_routes,
}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _throughput(factory: Any, concurrency: int, requests: int) -> float:
    async def go() -> float:
        call, close = await factory()
        try:
            await call()
            await asyncio.gather(*(call() for _ in range(concurrency)))  # open the pool's connections
            left = requests

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await call()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - start)
        finally:
            await close()

    return asyncio.run(go())


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:200]


def peer_worker(peer: str, url: str, quick: bool, expected: dict[str, str]) -> dict[str, Any]:
    """One peer in this (fresh) process: RSS after import and at the end, and per route the median
    time of a call and of a 50-piece stream, and requests/s at concurrency 100.

    ``expected`` is each route's answer text from the fake server: a peer whose answer differs is
    reported, not timed (it did not do the same work)."""
    calls, streams, async_requests = (150, 40, 400) if quick else (500, 100, 1500)
    out: dict[str, Any] = {"peer": peer, "version": _version(PEERS[peer][1]) if PEERS[peer][1] else "", "routes": {}}
    start_rss = _rss()
    try:
        routes = BUILDERS[peer](url)
    except ImportError as exc:
        out["missing"] = f"not installed here ({_error(exc)})"
        return out
    out["rss_import"] = _rss() - start_rss
    perf, cpu = time.perf_counter, time.process_time
    for route in ROUTES:
        spec = routes[route]
        result: dict[str, Any] = {"missing": dict(spec.missing or {})}
        out["routes"][route] = result
        try:
            text = spec.complete() if spec.complete else None
        except Exception as exc:
            result["missing"]["all"] = f"cannot call the fake server: {_error(exc)}"
            continue
        if text != expected[route]:
            result["missing"]["all"] = f"a different answer: {str(text)[:80]!r}"
            continue
        if spec.complete is not None:
            for _ in range(calls // 5):
                spec.complete()
            gc.collect()
            times = []
            cpu_started = cpu()
            for _ in range(calls):
                started = perf()
                spec.complete()
                times.append(perf() - started)
            # The client process's own CPU per call (all its threads): what the client costs,
            # whatever else the machine is doing meanwhile.
            result["complete_cpu"] = (cpu() - cpu_started) / calls
            result["complete"] = statistics.median(times)
        if spec.stream is not None:
            try:
                pieces = spec.stream()
            except Exception as exc:
                result["missing"]["stream"] = f"fails: {_error(exc)}"
            else:
                result["stream_pieces"] = pieces
                gc.collect()
                times = []
                for _ in range(streams):
                    started = perf()
                    spec.stream()
                    times.append(perf() - started)
                result["stream"] = statistics.median(times)
        if spec.async_factory is not None:
            try:
                result["async100"] = _throughput(spec.async_factory, 100, async_requests)
            except Exception as exc:
                result["missing"]["async"] = f"fails: {_error(exc)}"
    out["rss_end"] = _rss()
    return out
