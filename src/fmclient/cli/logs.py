"""``fmclient logs``: list, search and sum the prompt log; ``logs off|on|status|path``."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from typing import Any

from fmclient.cli._common import print_json


def add_parser(commands: Any) -> None:
    logs = commands.add_parser("logs", help="the prompt log: list, search (-q), sum (--usage); off/on/status/path")
    logs.add_argument("-n", "--count", type=int, default=3, help="how many of the newest to show (0: all; default 3)")
    logs.add_argument("-m", "--model", help="only this model (model id, or provider/model-id)")
    logs.add_argument("--cid", metavar="ID", help="only this conversation")
    logs.add_argument("-c", "--current", action="store_true", help="only the last conversation")
    logs.add_argument("-q", "--query", help="full-text search of prompts, system prompts and answers")
    logs.add_argument("--usage", action="store_true", help="sum tokens and cost per model instead of listing")
    logs.add_argument("--json", action="store_true", help="print JSON")
    actions = logs.add_subparsers(dest="logs_command", metavar="ACTION")
    for name, text in (
        ("off", "stop logging"),
        ("on", "log again"),
        ("status", "on or off, where, how many responses, schema version"),
        ("path", "print the database's path"),
    ):
        action = actions.add_parser(name, help=text)
        # SUPPRESS: `logs --json status` keeps the --json given before the action
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def run(args: argparse.Namespace) -> int:
    from fmclient.logstore import LogStore, default_log_path, logging_enabled, set_logging_enabled

    path = default_log_path()
    action = args.logs_command
    if action == "path":
        print(path)
        return 0
    if action in ("on", "off"):
        set_logging_enabled(action == "on")
        if args.json:
            print_json({"logging": action == "on", "path": str(path)})
        else:
            print(f"logging is {action}")
        return 0
    if action == "status":
        return _status(args, path, logging_enabled())
    model = _model_filter(args.model)
    with LogStore(path) as store:
        cid = args.cid
        if args.current:
            cid = store.last_conversation_id()
            if cid is None:
                raise ValueError("there is no conversation in the log yet")
        if args.usage:
            totals = store.usage_totals(model=model, conversation_id=cid, query=args.query)
            _print_usage(totals, as_json=args.json)
            return 0
        rows = store.responses(
            limit=None if args.count <= 0 else args.count, model=model, conversation_id=cid, query=args.query
        )
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            _print_row(row)
    return 0


def _model_filter(model: str | None) -> str | None:
    """``-m``: an alias is looked up in the configuration (provider/model-id); anything else as is."""
    if not model or "/" in model:
        return model
    from fmclient.config import load_settings
    from fmclient.errors import FMClientError

    try:
        settings = load_settings()
        if model not in settings.aliases:
            return model
        target = settings.resolve(model)
    except FMClientError:
        return model
    return f"{target.provider}/{target.model}"


def _status(args: argparse.Namespace, path: Any, enabled: bool) -> int:
    from fmclient.logstore import LogStore, read_pending

    info: dict[str, Any] = {"logging": enabled, "path": str(path), "exists": path.exists()}
    if path.exists():
        with LogStore(path) as store:
            info.update(responses=store.count(), schema_version=store.schema_version(), size=path.stat().st_size)
    info["pending"] = len(read_pending(path))
    if args.json:
        print_json(info)
        return 0
    print(f"logging: {'on' if enabled else 'off'}")
    print(f"database: {path}")
    if info["exists"]:
        print(f"responses: {info['responses']}")
        print(f"size: {info['size']} bytes, schema version {info['schema_version']}")
    if info["pending"]:
        print(f"pending: {info['pending']} (kept while the database could not be written; added with the next log)")
    return 0


def _money(amount: Decimal, currency: str) -> str:
    return f"${amount:f}" if currency == "USD" else f"{amount:f} {currency}"


def _print_row(row: dict[str, Any]) -> None:
    out = sys.stdout
    where = f"conversation {row['conversation_id']}" if row["conversation_id"] else ""
    operation = row.get("operation", "chat")
    what = "" if operation == "chat" else f"{operation}  "
    out.write(f"# {row['datetime_utc']}  {what}{row['provider']}/{row['model']}  {where}  (id {row['id']})\n\n")
    if row["system"]:
        out.write(f"## System\n\n{row['system']}\n\n")
    out.write(f"## Prompt\n\n{row['prompt']}\n\n")
    for item in row["attachments"]:
        size = f"{item['media_type']}, {item['size']} bytes, sha256 {item['sha256'][:16]}"
        out.write(f"- attachment {item['path'] or ''} ({size})\n")
    if row["attachments"]:
        out.write("\n")
    if row["reasoning"]:
        out.write(f"## Reasoning\n\n{row['reasoning']}\n\n")
    out.write(f"## Response{' (interrupted)' if row['error'] == 'interrupted' else ''}\n\n{row['answer']}\n\n")
    for call in row["tool_calls"]:
        result = f" -> {call['result']}" if "result" in call else ""
        failed = f" (failed: {call['error']})" if call.get("error") else ""
        out.write(f"- tool call {call['name']}({call['arguments']}){failed}{result}\n")
    usage = row["usage"]
    reason = (row["cost_reason"] or "not reported").removeprefix("cost unknown: ")
    cost = _money(Decimal(row["cost"]), row["currency"]) if row["cost"] else f"unknown ({reason})"
    tokens = f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out" if usage else "not reported"
    duration = f"{row['duration_ms']} ms" if row["duration_ms"] is not None else "?"
    out.write(f"tokens: {tokens} · cost: {cost} · {duration}\n\n")


def _print_usage(totals: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json([{**t, "cost": str(t["cost"])} for t in totals])
        return
    headings = ["MODEL", "RESPONSES", "INPUT", "OUTPUT", "COST"]
    total = {
        "provider": "",
        "model": "total",
        "responses": sum(t["responses"] for t in totals),
        "input_tokens": sum(t["input_tokens"] for t in totals),
        "output_tokens": sum(t["output_tokens"] for t in totals),
        "cost": sum((t["cost"] for t in totals), Decimal(0)),
        "currency": "USD",
        "unpriced": sum(t["unpriced"] for t in totals),
    }
    rows = []
    for t in [*totals, total]:
        priced = t["responses"] - t["unpriced"]
        cost = "unknown" if not priced else _money(t["cost"], t["currency"])
        if priced and t["unpriced"]:
            cost += f" (+{t['unpriced']} unpriced)"
        name = f"{t['provider']}/{t['model']}" if t["provider"] else t["model"]
        rows.append([name, str(t["responses"]), str(t["input_tokens"]), str(t["output_tokens"]), cost])
    widths = [max(len(r[i]) for r in [headings, *rows]) for i in range(len(headings))]
    for r in [headings, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
