"""``fmclient batch``: every prompt of a JSONL file, resumably."""

from __future__ import annotations

import argparse
import json
import sys
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
    result = client.batch(
        prompts,
        model=args.model,
        concurrency=args.concurrency,
        output=args.output,
        redo_failed=args.redo_failed,
        **{k: v for k, v in call_args.items() if v is not None},
    )
    print(f"fmclient batch: {result.summary()}", file=sys.stderr)
    print(json.dumps(result.to_dict()))
    return EXIT_ERROR if result.failed else 0
