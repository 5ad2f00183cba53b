#!/usr/bin/env python
"""Draw the Performance page's charts and tables from a ``bench/run.py --json`` result.

    python bench/run.py --scenario complete --scenario stream --scenario async --scenario peers --json results.json
    python bench/charts.py results.json            # writes docs/assets/perf/*.svg, updates docs/performance.md

Charts are horizontal bar charts written as plain SVG by this file: five charts of a dozen bars
do not need a plotting library, the files stay small and byte-stable (no timestamps or random
ids, so a re-run with the same numbers changes nothing in git), and they render on the docs site
with no script. The results between the ``<!-- bench:results ... -->`` markers of
``docs/performance.md`` are rewritten from the same JSON: the tables, the command and the machine.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "docs" / "assets" / "perf"
PAGE = ROOT / "docs" / "performance.md"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
ROUTE_COLOURS = {"OpenAI": "#3f51b5", "Anthropic": "#d9822b", "": "#3f51b5"}
PEER_ORDER = ("fmclient", "official SDK", "LiteLLM", "aisuite", "any-llm")


# -- SVG -----------------------------------------------------------------------------------------
def bar_chart(title: str, unit: str, bars: Sequence[tuple[str, str, float | None, str]], *, better: str) -> str:
    """``bars``: (label, route, value, value text); a None value is drawn as "n/a" with no bar."""
    label_width, bar_width, row, top = 190, 400, 22, 46
    values = [v for _, _, v, _ in bars if v is not None]
    largest = max(values) if values else 1.0
    height = top + row * len(bars) + 30
    width = label_width + bar_width + 150
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="8" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="8" y="36" fill="#555">{html.escape(unit)}; {html.escape(better)}</text>',
    ]
    for index, (label, route, value, text) in enumerate(bars):
        y = top + index * row
        name = f"{label} ({route})" if route else label
        out.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{html.escape(name)}</text>')
        if value is None:
            out.append(f'<text x="{label_width + 4}" y="{y + 14}" fill="#888">{html.escape(text)}</text>')
            continue
        length = max(1.0, bar_width * value / largest)
        colour = ROUTE_COLOURS.get(route, "#3f51b5")
        weight = ' font-weight="bold"' if label.startswith("fmclient") else ""
        out.append(f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" fill="{colour}"/>')
        out.append(f'<text x="{label_width + length + 6:.1f}" y="{y + 14}"{weight}>{html.escape(text)}</text>')
    legend_y = top + row * len(bars) + 18
    routes = sorted({route for _, route, _, _ in bars if route}, key=list(ROUTE_COLOURS).index)
    for index, route in enumerate(routes):
        x = label_width + index * 110
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{ROUTE_COLOURS[route]}"/>')
        out.append(f'<text x="{x + 16}" y="{legend_y}">{html.escape(route)} route</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- reading the results ----------------------------------------------------------------------
def _section(results: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    for title, data in results["sections"].items():
        if title.startswith(prefix):
            return dict(data)
    return None


def _label(name: str, entry: dict[str, Any]) -> str:
    version = entry.get("version") or ""
    return f"{name} {version}".strip() if version != "-" else name


def _route_bars(clients: dict[str, Any], key: str, fmt: str, scale: float) -> list[tuple[str, str, float | None, str]]:
    bars: list[tuple[str, str, float | None, str]] = []
    for route in ("OpenAI", "Anthropic"):
        for name in PEER_ORDER:
            entry = clients.get(name)
            if entry is None:
                continue
            if entry.get("missing"):
                bars.append((_label(name, entry), route, None, "not measured: " + str(entry["missing"])[:60]))
                continue
            got = entry["routes"].get(route, {})
            if key in got:
                value = got[key] * scale
                bars.append((_label(name, entry), route, value, fmt.format(value)))
            else:
                why = got.get("missing", {})
                kind = {"complete": "complete", "complete_cpu": "complete", "stream": "stream"}.get(key, "async")
                reason = why.get("all") or why.get(kind, "")
                bars.append((_label(name, entry), route, None, ("n/a: " + reason)[:70] if reason else "n/a"))
    return bars


def _has(clients: dict[str, Any], key: str) -> bool:
    return any(key in got for entry in clients.values() for got in (entry.get("routes") or {}).values())


def charts(results: dict[str, Any]) -> dict[str, str]:
    """File name -> SVG text."""
    peers = _section(results, "Peers: the same call")
    if peers is None:
        raise SystemExit("no peers section in these results: run bench/run.py with --scenario peers")
    clients = peers["clients"]
    made = {
        "per-call.svg": bar_chart(
            "Per-call overhead: the client's CPU time per call",
            "µs of client-process CPU per non-streamed call (the fake server runs apart)",
            _route_bars(clients, "complete_cpu" if _has(clients, "complete_cpu") else "complete", "{:,.0f} µs", 1e6),
            better="shorter is cheaper",
        ),
        "call-time.svg": bar_chart(
            "One non-streamed call, wall time (median)",
            "µs per call against a local fake server",
            _route_bars(clients, "complete", "{:,.0f} µs", 1e6),
            better="shorter is faster",
        ),
        "stream.svg": bar_chart(
            "One 50-chunk stream, start to end (median)",
            "µs per stream",
            _route_bars(clients, "stream", "{:,.0f} µs", 1e6),
            better="shorter is faster",
        ),
        "async.svg": bar_chart(
            "Async throughput, 100 calls in flight",
            "requests per second",
            _route_bars(clients, "async100", "{:,.0f} req/s", 1.0),
            better="longer is faster",
        ),
    }
    imports: list[tuple[str, str, float | None, str]] = []
    memory: list[tuple[str, str, float | None, str]] = []
    for name in PEER_ORDER:
        entry = clients.get(name)
        if entry is None:
            continue
        for module, seconds in entry.get("import", {}).items():
            label = _label(name, entry) if name != "official SDK" else f"SDK: {module}"
            imports.append(
                (f"import {module}" if name == "official SDK" else label, "", seconds * 1e3, f"{seconds * 1e3:,.0f} ms")
            )
        if entry.get("missing"):
            memory.append((_label(name, entry), "", None, "not measured"))
        else:
            rss = entry["rss_end"] / 2**20
            memory.append((_label(name, entry), "", rss, f"{rss:,.0f} MiB"))
    made["import.svg"] = bar_chart(
        "Import time, net of interpreter start", "milliseconds (median)", imports, better="shorter is faster"
    )
    made["memory.svg"] = bar_chart(
        "Resident memory after the run (both routes, all calls)",
        "MiB (median)",
        memory,
        better="shorter is smaller",
    )
    return made


def results_markdown(results: dict[str, Any], markdown: str | None, command: str) -> str:
    info = results["machine"]
    versions = ", ".join(
        f"{dist} {info[dist]}" for dist in ("anthropic", "openai", "httpx2", "aiohttp") if info.get(dist, "-") != "-"
    )
    lines = [
        START,
        "",
        f"Measured on {info['date']} with `{command}`" + (" (`--quick`)" if results.get("quick") else "") + ".",
        f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, {info['platform']}; {versions}.",
        "",
        "![Per-call overhead](assets/perf/per-call.svg)",
        "",
        "![One non-streamed call](assets/perf/call-time.svg)",
        "",
        "![One 50-chunk stream](assets/perf/stream.svg)",
        "",
        "![Async throughput](assets/perf/async.svg)",
        "",
        "![Import time](assets/perf/import.svg)",
        "",
        "![Memory](assets/perf/memory.svg)",
        "",
    ]
    if markdown:
        # The tables of the same run, as bench/run.py --markdown wrote them (one heading level down).
        body = re.sub(r"^### ", "#### ", markdown, flags=re.M)
        body = "\n".join(line for line in body.splitlines() if not line.startswith("Machine: "))
        lines += ["### The numbers", "", body.strip(), ""]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a bench/run.py --json file")
    parser.add_argument("--markdown", help="the bench/run.py --markdown file of the same run (tables for the page)")
    parser.add_argument("--command", default="python bench/run.py", help="the command that made the results")
    parser.add_argument("--no-page", action="store_true", help="only write the SVG files")
    parser.add_argument("--out", default=str(ASSETS), help="where the SVG files go (default: docs/assets/perf)")
    parser.add_argument("--page", default=str(PAGE), help="the page to update (default: docs/performance.md)")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    out, page_path = Path(args.out), Path(args.page)
    out.mkdir(parents=True, exist_ok=True)
    for name, svg in charts(results).items():
        (out / name).write_text(svg)
        print(f"wrote {out / name}")
    if not args.no_page:
        page = page_path.read_text()
        if START not in page or END not in page:
            raise SystemExit(f"{page_path} has no {START} ... {END} block to fill")
        markdown = Path(args.markdown).read_text() if args.markdown else None
        block = results_markdown(results, markdown, args.command)
        head, rest = page.split(START, 1)
        page_path.write_text(head + block + rest.split(END, 1)[1])
        print(f"updated {page_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
