"""bench/run.py runs: a smoke test of its quickest scenario. No timing is asserted here, ever:
the benchmark reports numbers, tests only check that it works and what it found structurally."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_import_scenario_runs_and_finds_no_sdk_imported(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    markdown = tmp_path / "results.md"
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--scenario", "import", "--json", str(results), "--markdown", str(markdown)],
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
