"""The ``fmclient`` command: complete, chat, logs, transcribe, speak, embed, batch, image, models, config.

One module per command group; each has ``add_parser(commands)`` and ``run(...)``. Errors print one
line on stderr and exit non-zero: never a traceback, never a key. Only the provider that a
command uses is imported, and ``logs`` and ``--help`` build no client at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fmclient.cli import batch, chat, complete, config, embed, image, logs, models, speak, transcribe
from fmclient.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, Warnings, fail
from fmclient.cli.image import image_paths
from fmclient.errors import FMClientError

__all__ = ["image_paths", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmclient", description="Talk to any foundation model.")
    parser.add_argument("--config", help="config file to read (default: $FMCLIENT_CONFIG, ./fmclient.toml, user dir)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (complete, chat, logs, transcribe, speak, embed, batch, image, models, config):
        group.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with Warnings() as warned:
        code = _guarded(args, warned)
        if code == 0:
            for message in warned.messages:
                print(f"fmclient: warning: {message}", file=sys.stderr)
        return code


def _guarded(args: argparse.Namespace, warned: Warnings) -> int:
    try:
        return _run(args)
    except (FMClientError, ValueError, TypeError, OSError) as error:
        fail(error, warned.messages)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fmclient: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug, not a user error: still one line, unless debugging
        if os.environ.get("FMCLIENT_DEBUG"):
            raise
        fail(error, warned.messages)
        return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.command == "logs":  # reads the log only: no client, no configuration
        return logs.run(args)
    if args.command == "config" and args.config_command in ("set", "path"):
        return config.run(None, args)
    from fmclient.client import Client

    client = Client(config_path=args.config)
    if args.command == "config":
        return config.run(client, args)
    runners = {
        "complete": complete.run,
        "chat": chat.run,
        "embed": embed.run,
        "batch": batch.run,
        "image": image.run,
        "models": models.run,
        "transcribe": transcribe.run,
        "speak": speak.run,
    }
    return runners[args.command](client, args)
