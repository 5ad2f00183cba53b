"""``fmclient chat``: an interactive conversation in the terminal.

Answers stream; Ctrl-C stops the current answer and keeps the chat open; Ctrl-D or ``/exit``
leaves. Input history (arrow keys, Ctrl-R) comes from the standard library's ``readline``: no
dependency to install, and it is what ``input()`` already drives. Every turn is logged like
``complete``'s, so ``fmclient logs --cid ID`` shows the chat and ``fmclient chat --cid ID``
resumes it.
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, provider_options
from fmclient.cli.complete import add_call_arguments, call_params, start_conversation
from fmclient.errors import FMClientError
from fmclient.secret import redact

if TYPE_CHECKING:
    from fmclient.cli._conversation import Conversation
    from fmclient.cli._tools import Toolset
    from fmclient.client import Client
    from fmclient.tool_loop import Run
    from fmclient.types import Completion

HELP = """\
  /model NAME     talk to another model from the next turn on
  /system TEXT    set the system prompt (/system alone shows it, /system - clears it)
  /reset          start a new conversation (same model and system prompt)
  /save FILE      write the conversation so far to FILE (Markdown)
  /usage          show (or stop showing) tokens and cost after each answer
  /cid            print this conversation's id (resume it: fmclient chat --cid ID)
  /exit           leave (Ctrl-D too)
  \"\"\"             on a line of its own, starts and ends a multi-line message
  a line ending with \\ continues on the next line
  Ctrl-C          stops the answer being written; at the prompt, clears the line"""

BLOCK = '"""'


def add_parser(commands: Any) -> None:
    chat = commands.add_parser("chat", help="an interactive conversation (streams; /help for commands)")
    add_call_arguments(chat)
    chat.add_argument("--usage", action="store_true", help="show tokens and cost after each answer")
    chat.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per turn on stdout (for a pipe); everything else goes to stderr",
    )


def _history_file() -> Path:
    from fmclient.logstore import user_data_dir

    return user_data_dir() / "chat-history"


def _start_history() -> Any:
    """Arrow-key history with readline, kept between sessions (0600); None where it is missing."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: input() still works, without history
        return None
    path = _history_file()
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)
    return readline


def _save_history(readline: Any) -> None:
    if readline is None:
        return
    path = _history_file()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        readline.write_history_file(path)
    except OSError:
        pass


def _read_message(prompt: str = "> ", more: str = "... ") -> str | None:
    """One message: a line, lines joined by a trailing backslash, or a triple-quoted block.
    None at end of input (Ctrl-D)."""
    try:
        line = input(prompt)
    except EOFError:
        return None
    if line.strip() == BLOCK:
        lines: list[str] = []
        while True:
            try:
                extra = input(more)
            except EOFError:
                break
            if extra.strip() == BLOCK:
                break
            lines.append(extra)
        return "\n".join(lines)
    while line.endswith("\\"):
        try:
            line = line[:-1] + "\n" + input(more)
        except EOFError:
            break
    return line


def _usage_line(completion: Completion | None, run: Run | None = None) -> str:
    """Tokens and cost of the turn: with tools, summed over the run's steps."""
    if completion is None:
        return ""
    usage = run.usage if run is not None else completion.usage
    cost = run.cost if run is not None else completion.cost
    money = f"${Decimal(cost.total):f}" if cost is not None else "cost unknown"
    return f"[{usage.input_tokens} in, {usage.output_tokens} out · {money}]"


def _save(conversation: Conversation, path: str) -> None:
    lines = [f"# Conversation {conversation.id} ({conversation.model})", ""]
    if conversation.system:
        lines += ["## System", "", conversation.system, ""]
    for message in conversation.messages:
        lines += [f"## {message.role.capitalize()}", "", message.text, ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._tools import Toolset

    options = provider_options(args.option)
    params = call_params(args)
    if sys.stdin is None or sys.stdin.closed:
        raise ValueError("chat reads what you type from stdin, and stdin is closed")
    tools = Toolset.from_args(args)
    store, conversation = start_conversation(args)
    conversation.model = conversation.model or client.settings.default_model
    client.settings.resolve(conversation.model)  # an unknown model: an error before the chat opens
    show_usage = bool(args.usage)
    try:
        if tools is not None:
            tools.start()
        return _chat(client, args, store, conversation, tools, show_usage, params, options)
    finally:
        if tools is not None:
            tools.close()


def _chat(
    client: Client,
    args: argparse.Namespace,
    store: Any,
    conversation: Conversation,
    tools: Toolset | None,
    show_usage: bool,
    params: dict[str, Any],
    options: dict[str, Any],
) -> int:
    from fmclient.cli._conversation import Conversation, new_conversation_id
    from fmclient.cli.complete import stopped_early

    readline = _start_history()
    as_json = bool(args.json)
    # With --json, stdout holds one JSON object per turn and nothing else: the banner, the
    # commands' replies and the input prompts go to stderr (or nowhere).
    out = sys.stderr if as_json else sys.stdout
    prompts = ("", "") if as_json else ("> ", "... ")
    resumed = f", {len(conversation.messages) // 2} earlier turns" if conversation.messages else ""
    out.write(f"Chatting with {conversation.model}, conversation {conversation.id}{resumed}.\n")
    out.write("Type /help for commands, /exit or Ctrl-D to leave.\n")
    out.flush()
    failed_logs = False

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    try:
        while True:
            try:
                message = _read_message(*prompts)
            except KeyboardInterrupt:
                out.write("^C\n")
                continue
            if message is None:
                out.write("\n")
                break
            text = message.strip()
            if not text:
                continue
            if text.startswith("/"):
                command, _, rest = text.partition(" ")
                rest = rest.strip()
                if command in ("/exit", "/quit"):
                    break
                if command == "/help":
                    out.write(HELP + "\n")
                elif command == "/model":
                    if rest:
                        try:
                            client.settings.resolve(rest)
                            conversation.model = rest
                        except FMClientError as error:
                            out.write(f"{redact(str(error))}\n")
                            continue
                    out.write(f"model: {conversation.model}\n")
                elif command == "/system":
                    if rest:
                        conversation.system = None if rest == "-" else rest
                    out.write(f"system: {conversation.system or '(none)'}\n")
                elif command == "/reset":
                    conversation = Conversation(new_conversation_id(), conversation.model, conversation.system)
                    out.write(f"new conversation {conversation.id}\n")
                elif command == "/save":
                    if not rest:
                        out.write("usage: /save FILE\n")
                        continue
                    try:
                        _save(conversation, rest)
                        out.write(f"saved to {rest}\n")
                    except OSError as error:  # a bad path does not end the chat
                        out.write(f"cannot save to {rest}: {error.strerror}\n")
                elif command == "/usage":
                    show_usage = not show_usage
                    out.write(f"usage after each answer: {'on' if show_usage else 'off'}\n")
                elif command == "/cid":
                    out.write(f"{conversation.id}\n")
                else:
                    out.write(f"unknown command {command}: /help lists them\n")
                out.flush()
                continue
            try:
                completion = conversation.ask(
                    client,
                    message,
                    store=store,
                    params=params,
                    options=options,
                    write=None if as_json else write,
                    source="chat",
                    tools=tools,
                )
            except KeyboardInterrupt:  # before the first chunk: nothing arrived
                _turn_json(as_json, conversation, message, error="interrupted")
                out.write("\n[stopped]\n")
                continue
            except FMClientError as error:  # one failed turn does not end the chat
                why = f"{type(error).__name__}: {redact(str(error))}"
                _turn_json(as_json, conversation, message, error=why)
                out.write(f"\nfmclient: {why}\n")
                continue
            failed_logs = failed_logs or conversation.log_failed
            if as_json:
                _turn_json(True, conversation, message, completion, None if completion else "interrupted")
                continue
            out.write("\n" if completion is not None else "\n[stopped]\n")
            stopped_early(conversation.last_run)
            if show_usage and completion is not None:
                out.write(_usage_line(completion, conversation.last_run) + "\n")
            out.flush()
    finally:
        _save_history(readline)
    return EXIT_ERROR if failed_logs else 0


def _turn_json(
    as_json: bool,
    conversation: Conversation,
    prompt: str,
    completion: Completion | None = None,
    error: str | None = None,
) -> None:
    """``chat --json``: one line of JSON per turn on stdout: the Completion (with the run, when
    tools ran), or the error that ended the turn."""
    if not as_json:
        return
    import json

    from fmclient.cli.complete import run_summary

    turn: dict[str, Any] = {"conversation_id": conversation.id, "prompt": prompt}
    if completion is not None:
        turn.update(completion.to_dict())
        turn.update(run_summary(conversation.last_run))
    if error is not None:
        turn["error"] = error
    sys.stdout.write(json.dumps(turn, default=str) + "\n")
    sys.stdout.flush()
