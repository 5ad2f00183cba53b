"""``fmclient complete``: answer one prompt, in a new conversation or one continued (-c, --cid)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import (
    EXIT_ERROR,
    print_json,
    provider_options,
    read_stdin,
    read_stdin_bytes,
    reasoning_value,
)
from fmclient.cli._tools import add_tool_arguments

if TYPE_CHECKING:
    from fmclient.client import Client
    from fmclient.tool_loop import Run


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of one model call, shared by ``complete`` and ``chat``."""
    parser.add_argument("-m", "--model", help="alias or provider/model-id (default: the configured default)")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument("--max-tokens", type=int, help="most tokens to generate")
    parser.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    parser.add_argument(
        "--reasoning", metavar="EFFORT", help="how hard to think: low, medium, high... or a token budget"
    )
    parser.add_argument("--timeout", type=float, help="deadline for each call, in seconds")
    parser.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE", help="provider option (repeatable); VALUE may be JSON"
    )
    parser.add_argument(
        "-c", "--continue", dest="continue_", action="store_true", help="continue the last conversation"
    )
    parser.add_argument("--cid", metavar="ID", help="continue the conversation with this id")
    add_tool_arguments(parser)


def add_parser(commands: Any) -> None:
    complete = commands.add_parser("complete", help="answer a prompt (streams to the terminal)")
    complete.add_argument("prompt", nargs="?", help="the prompt; read from stdin when omitted or '-'")
    add_call_arguments(complete)
    complete.add_argument(
        "-a",
        "--attach",
        action="append",
        metavar="FILE",
        help="image, audio, video or document to send with the prompt (repeatable); - reads bytes from stdin",
    )
    complete.add_argument(
        "--attach-type", metavar="MIME", help="the MIME type of the attachment read from stdin (-a -): required then"
    )
    complete.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    complete.add_argument("--json", action="store_true", help="print the whole Completion as JSON")


def call_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "reasoning": reasoning_value(args.reasoning),
        "timeout": args.timeout,
    }


def start_conversation(args: argparse.Namespace) -> tuple[Any, Any]:
    """The log (or None when off) and the conversation: new, the last one (-c) or ``--cid``.

    Continuing reads the log, so a log that cannot be opened is an error then; a new conversation
    only writes, and a log that fails at that point keeps the exchange in its pending file.
    """
    from fmclient.cli._conversation import Conversation, new_conversation_id, open_log
    from fmclient.logstore import LogStoreError

    wants_old = bool(args.continue_ or args.cid)
    if args.continue_ and args.cid:
        raise ValueError("give -c (the last conversation) or --cid ID, not both")
    try:
        store = open_log()
    except LogStoreError:
        if wants_old:
            raise
        store = None
    if not wants_old:
        return store, Conversation(new_conversation_id(), args.model, args.system)
    if store is None:
        raise ValueError("logging is off (fmclient logs on): there is no conversation to continue")
    cid = args.cid or store.last_conversation_id()
    if cid is None:
        raise ValueError(f"there is no earlier conversation in the log ({store.path}) to continue")
    conversation = Conversation.resume(store, cid)
    conversation.model = args.model or conversation.model
    conversation.system = args.system if args.system is not None else conversation.system
    return store, conversation


def load_attachments(args: argparse.Namespace) -> list[Any]:
    """The ``-a`` files (and ``-a -``: bytes on stdin of the type ``--attach-type`` names), each
    checked before anything is sent."""
    from fmclient.cli._conversation import Attached

    paths = list(args.attach or ())
    if paths.count("-") > 1:
        raise ValueError("-a - (stdin) can be given once")
    if "-" in paths:
        if not args.attach_type:
            raise ValueError("-a - reads the attachment's bytes from stdin: say their type with --attach-type MIME")
        if args.prompt in (None, "-"):
            raise ValueError("with -a - the attachment comes on stdin: give the prompt as an argument")
    elif args.attach_type:
        raise ValueError("--attach-type is the type of the bytes read with -a -: it takes no file")
    return [
        Attached.from_bytes(read_stdin_bytes("attachment (-a -)"), args.attach_type)
        if path == "-"
        else Attached.load(path)
        for path in paths
    ]


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._tools import Toolset

    attachments = load_attachments(args)
    tools = Toolset.from_args(args)
    options = provider_options(args.option)
    prompt = args.prompt if args.prompt not in (None, "-") else read_stdin("prompt")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    store, conversation = start_conversation(args)
    if conversation.model is None:
        conversation.model = client.settings.default_model
    # Resolve before anything is sent: an unknown model is an error, not a logged turn.
    client.settings.resolve(conversation.model)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        if tools is not None:
            tools.start()  # MCP servers: after every check that needs none
        stream = not (args.json or args.no_stream)
        completion = conversation.ask(
            client,
            prompt,
            store=store,
            attachments=attachments,
            params=call_params(args),
            options=options,
            stream=stream,
            write=None if args.json else write,
            tools=tools,
        )
    finally:
        if tools is not None:
            tools.close()
    if completion is None:  # Ctrl-C: what arrived was shown and logged
        sys.stdout.write("\n")
        return 130
    run = conversation.last_run
    if args.json:
        print_json({**completion.to_dict(), "conversation_id": conversation.id, **run_summary(run)})
    else:
        sys.stdout.write("\n")
    if stopped_early(run):
        return EXIT_ERROR
    return EXIT_ERROR if conversation.log_failed else 0


def run_summary(run: Run | None) -> dict[str, Any]:
    """With tools, ``--json`` adds the run: its steps, why it stopped, every call with its result,
    and usage and cost summed over the steps."""
    if run is None:
        return {}
    cost = run.cost
    return {
        "run": {
            "steps": len(run.steps),
            "stopped": run.stopped,
            "tool_calls": [
                {"step": step.number, "id": r.call_id, "name": r.name, "result": r.text, "is_error": r.is_error}
                for step in run.steps
                for r in step.tool_results
            ],
            "usage": run.usage.to_dict(),
            "cost": None if cost is None else cost.to_dict(),
            "cost_reason": run.cost_reason,
        }
    }


def stopped_early(run: Run | None) -> bool:
    """A tool loop that ran out of steps has no final answer: say so (the run is logged)."""
    if run is None or run.stopped != "max_steps":
        return False
    print(
        f"fmclient: stopped after {len(run.steps)} steps with tool calls still unanswered (--max-steps)",
        file=sys.stderr,
    )
    return True
