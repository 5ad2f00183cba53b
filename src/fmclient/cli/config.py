"""``fmclient config``: the effective configuration; ``config set KEY VALUE`` edits the user file;
``config path`` prints where that file is."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import print_json

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
    config = commands.add_parser("config", help="the effective configuration and where each value came from")
    config.add_argument("--json", action="store_true", help="the configuration as JSON (keys masked)")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION")
    setter = actions.add_parser(
        "set", help="set KEY (dotted: aliases.fast, providers.openai.base_url) in the user config file"
    )
    setter.add_argument("key")
    setter.add_argument("value", help='a TOML value (30, true, ["a"]) or plain text')
    actions.add_parser("path", help="print the user config file's path")


def run(client: Client | None, args: argparse.Namespace) -> int:
    if args.config_command == "set":
        return set_value(args.key, args.value)
    if args.config_command == "path":
        from fmclient.config import user_config_path

        print(user_config_path())
        return 0
    assert client is not None
    return show(client, as_json=args.json)


# -- config set ------------------------------------------------------------------------------
_TABLES = ("aliases", "providers", "fallbacks", "rate_limits", "prices", "budget", "cache", "circuit_breaker")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _split_key(key: str) -> list[str]:
    """``providers.openai.base_url`` -> parts; ``rate_limits."openai/gpt-4o".rpm`` keeps the quoted part."""
    import tomllib

    try:
        parsed = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        raise ValueError(f"{key!r} is not a config key (dotted names, e.g. aliases.fast)") from None
    parts: list[str] = []
    node: Any = parsed
    while isinstance(node, dict):
        (name, node), *_ = node.items()
        parts.append(name)
    return parts


def _toml_key(part: str) -> str:
    return part if _BARE_KEY.match(part) else json.dumps(part)


def _toml_value(text: str) -> str:
    """VALUE as TOML: kept when it already is a TOML value (30, true, "x", [..]), else quoted text."""
    import tomllib

    try:
        tomllib.loads(f"v = {text}")
        return text
    except tomllib.TOMLDecodeError:
        return json.dumps(text)


def _header_path(line: str) -> list[str] | None:
    """The key path of a ``[table]`` header line, or None when the line is not one."""
    import tomllib

    stripped = line.strip()
    if not stripped.startswith("[") or stripped.startswith("[["):
        return None
    try:
        parsed = tomllib.loads(stripped)
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    node: Any = parsed
    while isinstance(node, dict) and node:
        (name, node), *_ = node.items()
        path.append(name)
    return path


def edit_toml(text: str, parts: list[str], value: str) -> str:
    """``text`` with ``parts`` set to ``value`` (TOML), in place when the key exists, else added to
    its table (created at the end when missing). Everything else, comments too, is kept."""
    lines = text.splitlines()
    # Prefer the longest table header that is a prefix of the key: [providers.openai] for
    # providers.openai.base_url; the top level (no header) otherwise.
    tables: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(lines):
        path = _header_path(line)
        if path is not None:
            tables[tuple(path)] = number
    table: tuple[str, ...] = ()
    for cut in range(len(parts) - 1, 0, -1):
        if tuple(parts[:cut]) in tables:
            table = tuple(parts[:cut])
            break
    else:
        if len(parts) > 1 and parts[0] in _TABLES:
            table = tuple(parts[:-1])
    local = ".".join(_toml_key(p) for p in parts[len(table) :])
    if table in tables:
        start = tables[table] + 1
        later = [n for n in tables.values() if n > tables[table]]
        end = min(later) if later else len(lines)
    elif not table:
        start, end = 0, min(tables.values()) if tables else len(lines)
    else:
        start = end = len(lines)
    assignment = f"{local} = {value}"
    key_line = re.compile(r"^\s*" + re.escape(local) + r"\s*=")
    for number in range(start, end):
        if key_line.match(lines[number]):
            lines[number] = assignment
            return "\n".join(lines) + "\n"
    if table and table not in tables:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[" + ".".join(_toml_key(p) for p in table) + "]", assignment]
        return "\n".join(lines) + "\n"
    insert_at = end
    while insert_at > start and not lines[insert_at - 1].strip():
        insert_at -= 1
    lines.insert(insert_at, assignment)
    return "\n".join(lines) + "\n"


def set_value(key: str, raw_value: str) -> int:
    """Write KEY = VALUE into the user config file (created 0600), after checking the result loads."""
    from fmclient.config import find_config_file, load_settings, user_config_path

    path = user_config_path()
    parts = _split_key(key)
    value = _toml_value(raw_value)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    new = edit_toml(old, parts, value)
    _check(new, path, load_settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new)
    os.replace(temporary, path)
    secret = any(word in parts[-1].lower() for word in ("key", "token", "secret", "password"))
    print(f"{'.'.join(parts)} = {'**********' if secret else value}    # written to {path}")
    read = find_config_file(os.environ)
    if read is not None and read.resolve() != path.resolve():
        # Only one config file is read: a project file (or $FMCLIENT_CONFIG) hides the user's.
        print(f"fmclient: note: {read} is the config file read here, not {path}", file=sys.stderr)
    return 0


def _check(text: str, path: Path, load_settings: Any) -> None:
    """Refuse a value the configuration would not accept, before the file is touched."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        trial = Path(directory) / path.name
        trial.write_text(text, encoding="utf-8")
        load_settings(config_path=trial)


# -- config (show) ---------------------------------------------------------------------------
def show(client: Client, *, as_json: bool = False) -> int:
    settings = client.settings
    sources = settings.sources
    if as_json:
        print_json(
            {
                "config_file": str(settings.config_path) if settings.config_path else None,
                "default_model": settings.default_model,
                "default_embedding_model": settings.default_embedding_model,
                "default_image_model": settings.default_image_model,
                "max_retries": settings.max_retries,
                "timeout": settings.timeout,
                "telemetry": settings.telemetry,
                "aliases": dict(settings.aliases),
                "providers": {name: _provider_fields(p) for name, p in settings.providers.items()},
                "fallbacks": {m: list(chain) for m, chain in settings.fallbacks.items()},
                "sources": dict(sources),
            }
        )
        return 0

    def line(key: str, value: Any) -> None:
        print(f"{key} = {json.dumps(value)}    # {sources.get(key, 'default')}")

    print(f"# config file: {settings.config_path or 'none found'}")
    line("default_model", settings.default_model)
    line("default_embedding_model", settings.default_embedding_model)
    line("default_image_model", settings.default_image_model)
    line("max_retries", settings.max_retries)
    line("timeout", settings.timeout)
    line("max_retry_wait", settings.max_retry_wait)
    line("telemetry", settings.telemetry)
    if settings.fallback_on:
        line("fallback_on", sorted(settings.fallback_on))
    print("\n[aliases]")
    for alias in sorted(settings.aliases):
        print(f"{alias} = {json.dumps(settings.aliases[alias])}    # {sources.get('aliases.' + alias, 'default')}")
    for name in sorted(settings.providers):
        print(f"\n[providers.{name}]    # {sources.get('providers.' + name, 'default')}")
        for key, value in _provider_fields(settings.providers[name]).items():
            print(f"{key} = {json.dumps(value)}")
    if settings.fallbacks:
        print("\n[fallbacks]")
        for model, chain in sorted(settings.fallbacks.items()):
            print(f"{model} = {json.dumps(list(chain))}    # {sources.get('fallbacks.' + model, 'default')}")
    for key, limit in sorted(settings.rate_limits.items()):
        print(f'\n[rate_limits."{key}"]    # {sources.get("rate_limits." + key, "default")}')
        for name in ("rpm", "tpm"):
            if getattr(limit, name) is not None:
                print(f"{name} = {getattr(limit, name)}")
    return 0


def _provider_fields(provider: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": provider.type,
        "base_url": provider.base_url,
        "api_key_env": provider.api_key_env,
        "api_key": "**********" if provider.api_key is not None else None,
        "region": provider.region,
        "profile": provider.profile,
        "timeout": provider.timeout,
        "max_retries": provider.max_retries,
        **dict(provider.options),
    }
    return {key: value for key, value in fields.items() if value is not None}
