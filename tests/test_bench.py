"""bench/run.py runs: a smoke test of its quickest scenario. No timing is asserted here, ever:
the benchmark reports numbers, tests only check that it works and what it found structurally."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"
CHARTS = BENCH.with_name("charts.py")


def test_bench_import_scenario_runs_and_finds_no_sdk_imported(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    markdown = tmp_path / "results.md"
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--scenario",
            "import",
            "--json",
            str(results),
            "--markdown",
            str(markdown),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Cold import" in out.stdout and "import fmclient" in out.stdout
    sections = json.loads(results.read_text())["sections"]
    (imported,) = sections.values()
    assert imported["loaded"] == []  # no provider SDK, HTTP stack or pydantic on `import fmclient`
    assert len(imported["times"]["import fmclient"]) == len(imported["times"]["python -c pass"]) > 0
    assert "| measure | result | target | met |" in markdown.read_text()


def test_charts_draw_every_chart_and_fill_the_page_from_bench_json(tmp_path: Path) -> None:
    """bench/charts.py on a results file shaped as bench/run.py --json writes it (peers section):
    one SVG per chart, a bar per measured client and the reason for one that was not, and the
    page's results block replaced, the rest of the page kept."""
    measured = {"complete": 0.0005, "complete_cpu": 0.0003, "stream": 0.002, "async100": 1500.0, "missing": {}}
    clients = {
        "fmclient": {
            "version": "0.1.0",
            "missing": None,
            "routes": {"OpenAI": measured, "Anthropic": {**measured, "missing": {}}},
            "rss_import": 4e6,
            "rss_end": 9e7,
            "import": {"fmclient": 0.03},
        },
        "official SDK": {
            "version": "",
            "missing": None,
            "routes": {"OpenAI": {**measured, "complete": 0.0009, "complete_cpu": 0.0007}, "Anthropic": measured},
            "rss_import": 8e7,
            "rss_end": 9e7,
            "import": {"openai": 0.6, "anthropic": 1.2},
        },
        "aisuite": {"version": "-", "missing": "not installed here (ModuleNotFoundError)", "routes": {}, "import": {}},
    }
    results = {
        "machine": {
            "date": "2026-12-07",
            "cores": "2",
            "cpu": "CPU",
            "python": "3.11",
            "platform": "Linux",
            "openai": "3",
        },
        "quick": True,
        "sections": {"Peers: the same call through each client (2 rounds)": {"clients": clients, "rounds": 2}},
    }
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results))
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nintro\n<!-- bench:results:start -->\nold\n<!-- bench:results:end -->\nend\n")
    out = subprocess.run(
        [
            sys.executable,
            str(CHARTS),
            str(source),
            "--out",
            str(tmp_path / "svg"),
            "--page",
            str(page),
            "--command",
            "X",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    svgs = {p.name: p.read_text() for p in (tmp_path / "svg").iterdir()}
    assert set(svgs) == {"per-call.svg", "call-time.svg", "stream.svg", "async.svg", "import.svg", "memory.svg"}
    assert all(svg.startswith("<svg") and svg.rstrip().endswith("</svg>") for svg in svgs.values())
    assert "300 µs" in svgs["per-call.svg"] and "700 µs" in svgs["per-call.svg"]  # CPU per call
    assert "500 µs" in svgs["call-time.svg"] and "900 µs" in svgs["call-time.svg"]
    assert "not installed here" in svgs["per-call.svg"] and "1,500 req/s" in svgs["async.svg"]
    text = page.read_text()
    assert text.startswith("# Performance\n\nintro\n") and text.endswith("end\n") and "old" not in text
    assert "with `X`" in text and "assets/perf/per-call.svg" in text


# -- what the bench asks for: models their providers still serve, the same request on every side ----
def _bench_module(name: str):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH.with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_bench_asks_for_models_their_providers_still_serve() -> None:
    # The bench runs in its own processes, without the suite's fixed day: a retired model there is
    # refused (gemini-2.5-flash since 2026-12-01) and a retiring one warns. None may be named at all.
    from fmclient.deprecations import deprecation

    run, peers, server = _bench_module("run"), _bench_module("peers"), _bench_module("server")
    for module in (run, peers, server):
        assert deprecation("openai", module.OPENAI_MODEL) is None, module.__name__
        assert deprecation("anthropic", module.ANTHROPIC_MODEL) is None, module.__name__
    assert run.OPENAI_MODEL == peers.OPENAI_MODEL == server.OPENAI_MODEL
    assert "gemini-2.5" not in BENCH.read_text() + BENCH.with_name("server.py").read_text()


def test_fmclient_and_the_sdk_send_the_same_openai_request_in_the_bench() -> None:
    # The comparison is fair only if both sides send the same body: a reasoning model's profile
    # sends max_completion_tokens and a developer message, so the SDK side must too.
    from tests.fakes import openai as fo
    from tests.fakes.server import FakeServer

    peers = _bench_module("peers")
    with FakeServer() as server:
        server.queue(*(fo.Reply(body=fo.completion_body(fo.Answer(text="same"))) for _ in range(2)))
        peers.fmclient_routes(server.url)["OpenAI"].complete()
        peers.sdk_routes(server.url)["OpenAI"].complete()
        fm_sent, sdk_sent = server.requests
    assert fm_sent.path == sdk_sent.path == "/v1/chat/completions"
    assert fm_sent.json() == sdk_sent.json()
    assert fm_sent.json()["model"] == peers.OPENAI_MODEL


def test_the_fake_server_answers_a_three_step_tool_run_for_each_loop_of_the_loop_scenario() -> None:
    """bench/server.py asks for two ``noop`` calls until four results are in, then answers: every
    loop of bench/peers.py that is installed here ends with that answer after three model calls,
    and one that is not says so with an ImportError (the scenario shows it as not installed)."""
    run, peers = _bench_module("run"), _bench_module("peers")
    with run.FakeServer() as server:
        answer = run.fm_client(server.url).complete("hi", model=f"openai/{run.OPENAI_MODEL}").text
        ran = []
        for name, build in peers.LOOPS.items():
            try:
                loop = build(server.url)
            except ImportError:
                continue
            assert loop() == (answer, peers.LOOP_STEPS), name
            ran.append(name)
    assert "OpenAI SDK, hand-written loop" in ran


def test_bench_media_sides_get_the_same_answer_and_the_server_drops_uploads(tmp_path: Path) -> None:
    """The media scenario's pieces, small: its WAV and PDF are what they say, both sides of each
    case get the server's answer (the upload read and dropped), and the memory worker reports."""
    from fmclient import _media
    from fmclient.deprecations import deprecation

    run = _bench_module("run")
    assert deprecation("openai", run.TRANSCRIBE_MODEL) is None

    audio, document = run.media_wav(300_044), run.media_pdf(3, image_bytes=2_500)
    assert len(audio) == 300_044 and _media.sniff(audio, "audio") == "audio/wav"
    assert _media.wav_seconds(audio) == 300_000 / 2 / 24_000
    assert _media.pdf_page_count(document) == 3
    with run.FakeServer() as server:
        for case in run.MEDIA_CASES:
            data = audio if case.startswith("transcribe") else document
            texts = [
                run.media_text(case, side, run.media_calls(server.url, case, side)(data))
                for side in ("fmclient", "SDK")
            ]
            assert texts[0] == texts[1] and "fox" in texts[0], case
        big, small = tmp_path / "big.wav", tmp_path / "small.wav"
        big.write_bytes(audio)
        small.write_bytes(run.media_wav(4_844))
        found = run._worker(["media", "fmclient", run.MEDIA_CASES[0], server.url, str(big), str(small), "1"])
    assert found["media"] == len(audio) and found["added"] >= 0 and found["reset"] in (True, False)
