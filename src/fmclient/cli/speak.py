"""``fmclient speak``: text read aloud, written to an audio file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, print_json, provider_options, read_stdin

if TYPE_CHECKING:
    from fmclient.client import Client

# File extensions that name a speech format, so `-o answer.wav` asks for WAV without --format.
_FORMAT_EXTENSIONS = ("mp3", "wav", "opus", "aac", "flac", "pcm")


def add_parser(commands: Any) -> None:
    speak = commands.add_parser("speak", help="read text aloud into an audio file")
    speak.add_argument("text", help="what to say; - reads it from stdin")
    speak.add_argument("-m", "--model", required=True, help="speech model alias or provider/model-id")
    speak.add_argument("--voice", help="the voice: alloy, coral... (OpenAI), Kore, Puck... (Gemini)")
    speak.add_argument(
        "--format", help="mp3, wav, opus, aac, flac or pcm (default: the output file's extension, else the model's)"
    )
    speak.add_argument("--instructions", help="how to speak: 'calm and slow' (models that take it)")
    speak.add_argument("-o", "--output", required=True, help="the audio file to write; - writes it to stdout")
    speak.add_argument("--timeout", type=float, help="deadline for the call, in seconds")
    speak.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="provider option (repeatable); VALUE may be JSON"
    )
    speak.add_argument("--json", action="store_true", help="the file, type, size, usage and cost as JSON on stdout")


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._conversation import write_log
    from fmclient.errors import FMClientError
    from fmclient.logstore import Attachment, LogRecord

    text = args.text if args.text != "-" else read_stdin("text to speak")
    if not text.strip():
        raise ValueError("the text to speak must not be empty")
    if not args.voice:
        raise ValueError("speak needs a voice: --voice NAME (alloy, coral... on OpenAI; Kore, Puck... on Gemini)")
    if args.output == "-" and args.json:
        raise ValueError("-o - writes the audio to stdout, where --json would go: name a file")
    if args.output == "-" and sys.stdout.isatty():
        raise ValueError("-o - would write audio bytes to the terminal: name a file or pipe stdout")
    suffix = Path(args.output).suffix.lower().lstrip(".")
    audio_format = args.format or (suffix if suffix in _FORMAT_EXTENSIONS else None)
    options = provider_options(args.option)
    target = client.settings.resolve(args.model)  # an unknown model: an error, nothing logged
    started = time.perf_counter()
    result = failed = None
    try:
        result = client.speak(
            text,
            model=args.model,
            voice=args.voice,
            format=audio_format,
            instructions=args.instructions,
            timeout=args.timeout,
            **options,
        )
    except FMClientError as error:
        failed = error
    path = None
    if result is not None:
        if args.output == "-":
            sys.stdout.buffer.write(result.data)
            sys.stdout.flush()
        else:
            result.save(args.output)
            path = str(Path(args.output).resolve())
    record = LogRecord.for_operation(
        "speak",
        result,
        prompt=text,
        model=target.model,
        provider=target.provider,
        options={"voice": args.voice, "format": audio_format, "instructions": args.instructions, **options},
        duration=time.perf_counter() - started,
        attachments=[] if result is None else [Attachment.of(result.data, result.mime_type, path)],
        error=None if failed is None else f"{type(failed).__name__}: {failed}",
    )
    logged = write_log(record)
    if failed is not None:
        raise failed
    assert result is not None
    if args.json:
        cost = result.cost
        print_json(
            {
                "path": args.output,
                "mime_type": result.mime_type,
                "bytes": len(result.data),
                "characters": result.characters,
                "model": result.model,
                "provider": result.provider,
                "usage": None if result.usage is None else result.usage.to_dict(),
                "cost": None if cost is None else cost.to_dict(),
                "cost_reason": result.cost_reason,
            }
        )
    elif args.output != "-":
        print(args.output)
    return 0 if logged else EXIT_ERROR
