"""Every code block on the documentation site (``docs/**/*.md``) runs, against the mock provider.

Each page is one test. Its blocks run in order and share one namespace, as a reader would type
them, inside one :class:`~fmclient.testing.MockProvider` that answers every model (no key, no
network). The test fails if any block raises (unless a marker says it must), or if a CLI command
exits non-zero.

* ``python`` blocks are executed. A ``test_*`` function a block defines is then called, with a
  fresh mock for a ``fmclient_mock`` parameter, the way pytest would.
* ``bash`` blocks: every line is an ``fmclient ...`` command, optionally fed by ``echo TEXT |``;
  it runs in-process through :func:`fmclient.cli.main` and must exit 0.
* ``toml`` blocks are loaded as a config file, so every configuration shown is valid.
* ``text`` blocks are output and are not run; any other language fails the test.

Markers are HTML comments (invisible on the site) directly above a block, one per line:

* ``<!-- docs-test: skip REASON -->`` not run; for install commands only, with the reason.
* ``<!-- docs-test: real -->`` runs with the mock switched off, against the real adapters with no
  key: for refusals, which happen before any request.
* ``<!-- docs-test: raises NAME -->`` the block must raise ``fmclient.NAME`` (or a builtin); a
  ``# NAME: message`` comment in the block must be its message (``...`` stands for any text).
* ``<!-- docs-test: setup CODE -->`` runs CODE first, with the page's mock as ``mock`` and
  ``fmclient`` imported (e.g. to script the tool call that the page's example then handles).
* ``<!-- docs-test: file NAME -->`` (toml) also writes the block to NAME in the working directory,
  where ``Client()`` finds ``fmclient.toml``.

A small parser of our own rather than ``pytest-examples``: that tool runs every block on its own
and centres on lint/format/print-output checks, while these pages are stories whose later blocks
use names the earlier ones defined, some blocks must run with the mock off, CLI blocks need the
in-process runner, and TOML blocks are checked as configuration. The rules fit in this file.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import io
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import fmclient
from fmclient.cli import main as cli_main
from fmclient.config import load_settings
from fmclient.testing import MockProvider

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
RUN_LANGUAGES = {"python", "bash", "toml"}
OUTPUT_LANGUAGES = {"text"}
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)(.*)$")


@dataclass
class Block:
    where: str  # "docs/page.md:LINE" of the opening fence
    language: str
    code: str
    skip: str | None = None
    real: bool = False
    raises: str | None = None
    setup: list[str] = field(default_factory=list)
    file: str | None = None


def parse(text: str, name: str) -> list[Block]:
    """The fenced blocks of a page, with the markers written directly above each."""
    blocks: list[Block] = []
    markers: list[tuple[str, str, int]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line)
        fence = FENCE.match(line)
        if marker:
            markers.append((marker[1], marker[2], index + 1))
        elif fence:
            indent, language = fence[1], fence[2] or ""
            opened = index + 1
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index].lstrip())
                index += 1
            if index == len(lines):
                raise ValueError(f"{name}:{len(lines)}: unclosed code block")
            block = Block(where=f"{name}:{opened}", language=language, code="\n".join(body) + "\n")
            for kind, argument, at in markers:
                _apply_marker(block, kind, argument, f"{name}:{at}")
            markers = []
            if language not in RUN_LANGUAGES | OUTPUT_LANGUAGES:
                raise ValueError(f"{block.where}: code block language {language!r} is neither run nor output")
            blocks.append(block)
        elif markers:
            kind, _, at = markers[0]
            raise ValueError(f"{name}:{at}: marker {kind!r} is not directly above a code block")
        index += 1
    if markers:
        raise ValueError(f"{name}:{markers[0][2]}: marker at the end of the page")
    return blocks


def _apply_marker(block: Block, kind: str, argument: str, where: str) -> None:
    if kind == "skip":
        if not argument:
            raise ValueError(f"{where}: 'skip' needs a reason")
        block.skip = argument
    elif kind == "real":
        block.real = True
    elif kind == "raises":
        block.raises = argument
    elif kind == "setup":
        block.setup.append(argument)
    elif kind == "file":
        block.file = argument
    else:
        raise ValueError(f"{where}: unknown docs-test marker {kind!r}")


def _exception_class(name: str) -> type[BaseException]:
    found = getattr(fmclient, name, None) or getattr(builtins, name, None)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"raises {name!r}: not an fmclient error or builtin exception")
    return found


def _run_python(block: Block, namespace: dict[str, Any]) -> None:
    before = set(namespace)
    exec(compile(block.code, block.where, "exec"), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and name not in before and inspect.isfunction(value):
            _call_test_function(value, block)


def _call_test_function(function: Any, block: Block) -> None:
    parameters = list(inspect.signature(function).parameters)
    unknown = [p for p in parameters if p != "fmclient_mock"]
    if unknown:
        raise ValueError(f"{block.where}: {function.__name__} takes fixtures the docs runner lacks: {unknown}")
    if parameters:
        with MockProvider() as fresh:
            function(fresh)
    else:
        function()


def _run_bash(block: Block) -> str:
    output = io.StringIO()
    for line in block.code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        stdin_text = ""
        if "|" in words:
            feed, words = words[: words.index("|")], words[words.index("|") + 1 :]
            if feed[:1] != ["echo"]:
                raise ValueError(f"{block.where}: only 'echo TEXT |' may feed a command, got {line!r}")
            stdin_text = " ".join(feed[1:]) + "\n"
        if words[:1] != ["fmclient"]:
            raise ValueError(f"{block.where}: {line!r} is not an fmclient command; mark the block skip with a reason")
        saved_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin_text)
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                code = cli_main(words[1:])
        finally:
            sys.stdin = saved_stdin
        if code != 0:
            raise AssertionError(f"{block.where}: {line!r} exited {code}:\n{output.getvalue()}")
    return output.getvalue()


def _run_toml(block: Block, scratch: Path) -> None:
    path = scratch / f"block-{abs(hash(block.where))}.toml"
    path.write_text(block.code)
    load_settings(env={}, config_path=path)
    if block.file:
        Path(block.file).write_text(block.code)


def run_page(blocks: list[Block], scratch: Path) -> None:
    """Run a page's blocks in order; raise AssertionError naming the block that misbehaved."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    fmclient.set_default_client(None)  # the shortcuts' client is rebuilt from this page's configuration
    with MockProvider() as mock:
        for block in blocks:
            if block.skip or block.language in OUTPUT_LANGUAGES:
                continue
            try:
                _run_block(block, namespace, mock, scratch)
            except AssertionError:
                raise
            except Exception as exc:
                raise AssertionError(f"{block.where}: the {block.language} block raised {exc!r}") from exc
    fmclient.set_default_client(None)


def _run_block(block: Block, namespace: dict[str, Any], mock: MockProvider, scratch: Path) -> None:
    for code in block.setup:
        exec(code, {**namespace, "mock": mock, "fmclient": fmclient})
    expected = _exception_class(block.raises) if block.raises else None
    switched_off = block.real
    if switched_off:
        mock.__exit__()
    try:
        try:
            if block.language == "python":
                _run_python(block, namespace)
            elif block.language == "bash":
                _run_bash(block)
            else:
                _run_toml(block, scratch)
        except Exception as exc:
            if expected is not None and isinstance(exc, expected):
                _check_shown_message(block, exc)
                return
            raise
        if expected is not None:
            raise AssertionError(f"{block.where}: the block was to raise {block.raises} and did not")
    finally:
        if switched_off:
            mock.__enter__()


def _check_shown_message(block: Block, exc: Exception) -> None:
    """A ``# ErrorName: message`` comment under a raising block must be the real message
    (``...`` stands for any text; following ``#`` lines continue it)."""
    lines = block.code.splitlines()
    prefix = f"# {block.raises}: "
    starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if not starts:
        return
    shown = [lines[starts[0]][len(prefix) :]]
    shown += [line[2:] for line in lines[starts[0] + 1 :] if line.startswith("# ")]
    pattern = ".*".join(re.escape(part) for part in " ".join(shown).split("..."))
    if not re.fullmatch(pattern, str(exc), re.DOTALL):
        raise AssertionError(f"{block.where}: the page shows {' '.join(shown)!r}, the error says {str(exc)!r}")


def _page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_block_on_the_page_runs(page: Path, tmp_path: Path) -> None:
    blocks = parse(page.read_text(), f"docs/{_page_id(page)}")
    run_page(blocks, tmp_path)


def test_the_pages_hold_the_examples() -> None:
    """Guards the parser: if it silently found nothing, every page test would pass vacuously."""
    blocks = [b for page in PAGES for b in parse(page.read_text(), str(page))]
    run = [b for b in blocks if not b.skip and b.language in RUN_LANGUAGES]
    assert sum(b.language == "python" for b in run) >= 40
    assert sum(b.language == "bash" for b in run) >= 2
    assert sum(b.language == "toml" for b in run) >= 5
    skipped = [b.where for b in blocks if b.skip]
    assert len(skipped) <= 8, skipped  # exclusions stay few; each names its reason
    guides = [p for p in PAGES if p.parent == DOCS and p.name != "index.md"] + list((DOCS / "providers").glob("*.md"))
    for page in guides:
        runnable = [b for b in parse(page.read_text(), str(page)) if not b.skip and b.language in {"python", "bash"}]
        assert runnable, f"{page} has no example that runs"


# -- the runner itself: a block that raises must fail the page --------------------------------------
def _page(text: str, tmp_path: Path) -> None:
    run_page(parse(text, "page.md"), tmp_path)


def test_a_block_that_raises_fails_the_page(tmp_path: Path) -> None:
    text = "intro\n\n```python\nx = 1\n```\n\n```python\n\nraise RuntimeError('boom')\n```\n"
    with pytest.raises(AssertionError, match=r"page\.md:7: the python block raised RuntimeError\('boom'\)"):
        _page(text, tmp_path)


def test_blocks_share_a_namespace_and_run_under_the_mock(tmp_path: Path) -> None:
    text = (
        "```python\nfrom fmclient import Client\nclient = Client()\n```\n"
        "<!-- docs-test: setup mock.add_reply('scripted') -->\n"
        "```python\nassert client.complete('hi', model='claude-sonnet').text == 'scripted'\n```\n"
    )
    _page(text, tmp_path)


def test_a_raises_marker_fails_when_nothing_is_raised(tmp_path: Path) -> None:
    text = "<!-- docs-test: raises UnsupportedFeatureError -->\n```python\nx = 1\n```\n"
    with pytest.raises(AssertionError, match="was to raise UnsupportedFeatureError"):
        _page(text, tmp_path)


def test_a_shown_error_message_must_be_the_real_one(tmp_path: Path) -> None:
    text = (
        "<!-- docs-test: raises ValueError -->\n"
        "```python\nraise ValueError('temperature must be between 0 and 2, got 3')\n"
        "# ValueError: temperature must be between 0 and 1, got 3\n```\n"
    )
    with pytest.raises(AssertionError, match="the page shows"):
        _page(text, tmp_path)


def test_a_real_block_runs_without_the_mock(tmp_path: Path) -> None:
    # With the mock off the real anthropic adapter is asked, and finds no key: a ConfigurationError.
    text = (
        "<!-- docs-test: real -->\n"
        "```python\nimport fmclient\nfmclient.Client().complete('hi', model='claude-sonnet')\n```\n"
    )
    with pytest.raises(AssertionError, match="ConfigurationError"):
        _page(text, tmp_path)


def test_a_failing_cli_command_fails_the_page(tmp_path: Path) -> None:
    text = "```bash\nfmclient complete hi -m no-such-alias\n```\n"
    with pytest.raises(AssertionError, match="exited 1"):
        _page(text, tmp_path)


def test_an_invalid_config_block_fails_the_page(tmp_path: Path) -> None:
    text = "```toml\nmax_retries = 'many'\n```\n"
    with pytest.raises(AssertionError, match="max_retries must be an integer"):
        _page(text, tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: skip -->\n```bash\npip install x\n```\n",  # a skip without its reason
        "<!-- docs-test: sometimes -->\n```python\nx = 1\n```\n",  # an unknown marker
        "<!-- docs-test: real -->\n\nprose\n```python\nx = 1\n```\n",  # a marker not above a block
        "```js\nalert(1)\n```\n",  # a language that would silently escape the tests
        "```bash\nrm -rf build\n```\n",  # a shell command that is not fmclient
    ],
)
def test_the_rules_are_enforced(text: str, tmp_path: Path) -> None:
    with pytest.raises((ValueError, AssertionError)):
        _page(text, tmp_path)


# -- the alias tables on the pages are the built-in table (src/fmclient/defaults.toml) -----------
ALIAS_ROW = re.compile(r"^\| `([\w.-]+)` \| `([\w.:/-]+)`", re.MULTILINE)


def _alias_rows(page: Path, heading: str) -> dict[str, str]:
    text = page.read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return dict(ALIAS_ROW.findall(section))


def test_the_alias_tables_are_the_built_in_aliases() -> None:
    built_in = dict(load_settings(env={}).aliases)
    assert _alias_rows(DOCS / "configuration.md", "## Built-in aliases") == built_in
    on_provider_pages: dict[str, str] = {}
    for page in sorted((DOCS / "providers").glob("*.md")):
        if page.name != "index.md":
            on_provider_pages.update(_alias_rows(page, "## Aliases"))
    assert on_provider_pages == built_in
