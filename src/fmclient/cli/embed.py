"""``fmclient embed``: one JSON line per text."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, read_stdin

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
    embed = commands.add_parser("embed", help="embed texts; prints one JSON line per text")
    embed.add_argument("texts", nargs="*", help="texts to embed; lines of stdin when none are given")
    embed.add_argument("-m", "--model", help="embedding model alias or provider/model-id")
    embed.add_argument("--json", action="store_true", help="JSON lines (the default; accepted for symmetry)")


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._conversation import log_call

    texts = list(args.texts) or [line for line in read_stdin("texts").splitlines() if line.strip()]
    model = args.model or client.settings.default_embedding_model
    # Logged with its texts, usage and cost; the vectors are not stored.
    result, logged = log_call(client, "embed", model, lambda: client.embed(texts, model=model), prompt="\n".join(texts))
    for text, vector in zip(texts, result.vectors, strict=True):
        print(json.dumps({"text": text, "embedding": vector}))
    return 0 if logged else EXIT_ERROR
