"""``fmclient batch``: every prompt of a JSONL file, resumably."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, provider_options, reasoning_value

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
    batch = commands.add_parser("batch", help="answer every prompt of a JSONL file; resumable")
    batch.add_argument("prompts", help="JSONL: one prompt string, or {prompt|messages, id?, system?}, per line")
    batch.add_argument("-m", "--model", help="alias or provider/model-id (default: the configured default)")
    batch.add_argument("-o", "--output", required=True, help="results JSONL; rerun with it to finish a broken run")
    batch.add_argument("-c", "--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
    batch.add_argument("-s", "--system", help="system prompt for every item without its own")
    batch.add_argument("--max-tokens", type=int, help="most tokens to generate per item")
    batch.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    batch.add_argument("--timeout", type=float, help="deadline for each item's call, in seconds")
    batch.add_argument(
        "--reasoning", metavar="EFFORT", help="how hard to think: low, medium, high... or a token budget"
    )
    batch.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="provider option (repeatable); VALUE may be JSON"
    )
    batch.add_argument("--redo-failed", action="store_true", help="send again the items an earlier run failed")
    batch.add_argument("--json", action="store_true", help="the summary as JSON on stdout (always printed)")


def _read_prompts(path: str) -> list[Any]:
    prompts = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                prompts.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    return prompts


def run(client: Client, args: argparse.Namespace) -> int:
    call_args = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "timeout": args.timeout,
        "reasoning": reasoning_value(args.reasoning),
        **provider_options(args.option),
    }
    prompts = _read_prompts(args.prompts)
    if args.system is not None:
        prompts = [
            {"prompt": p, "system": args.system}
            if isinstance(p, (str, list))
            else ({"system": args.system, **p} if isinstance(p, dict) else p)
            for p in prompts
        ]
    model = args.model or client.settings.default_model
    target = client.settings.resolve(model)  # an unknown model: an error, nothing logged
    started = time.perf_counter()
    result = client.batch(
        prompts,
        model=model,
        concurrency=args.concurrency,
        output=args.output,
        redo_failed=args.redo_failed,
        **{k: v for k, v in call_args.items() if v is not None},
    )
    print(f"fmclient batch: {result.summary()}", file=sys.stderr)
    print(json.dumps(result.to_dict()))
    logged = _log(result, target, args, call_args, time.perf_counter() - started)
    return EXIT_ERROR if result.failed or not logged else 0


def _log(result: Any, target: Any, args: argparse.Namespace, call_args: dict[str, Any], seconds: float) -> bool:
    """One log row for the run: its summary, tokens and cost (the answers are in the -o file)."""
    from decimal import Decimal

    from fmclient.cli._conversation import write_log
    from fmclient.logstore import LogRecord, safe_options

    record = LogRecord(
        model=target.model,
        provider=target.provider,
        prompt=f"{args.prompts} -> {args.output}",
        answer=result.summary(),
        system=args.system,
        usage={"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
        duration_ms=round(seconds * 1000),
        operation="batch",
        error=f"{result.failed} items failed" if result.failed else None,
    )
    record.options = safe_options(call_args)
    if result.cost_unknown:
        record.cost_reason = f"cost unknown for {result.cost_unknown} of the items answered in this run"
    else:
        record.cost, record.currency = str(Decimal(repr(result.cost))), "USD"
    return write_log(record)
