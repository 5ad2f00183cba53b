"""``fmclient transcribe``: the text of an audio file (or of audio piped on stdin)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, print_json, provider_options, read_stdin_bytes

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
    transcribe = commands.add_parser("transcribe", help="transcribe an audio file; prints the text")
    transcribe.add_argument("file", help="the audio file (WAV, MP3, FLAC, OGG, WebM, M4A...); - reads it from stdin")
    transcribe.add_argument("-m", "--model", required=True, help="transcription model alias or provider/model-id")
    transcribe.add_argument("--language", help="the language spoken, ISO-639-1 (en, fr...): helps the model")
    transcribe.add_argument("--prompt", help="text that helps the model: names, spelling, the topic")
    transcribe.add_argument("--type", metavar="MIME", help="the audio's MIME type, where its bytes do not tell it")
    transcribe.add_argument("--timeout", type=float, help="deadline for the call, in seconds")
    transcribe.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE", help="provider option (repeatable); VALUE may be JSON"
    )
    transcribe.add_argument("--json", action="store_true", help="text, language, duration, segments, usage, cost")


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._conversation import write_log
    from fmclient.errors import FMClientError
    from fmclient.logstore import Attachment, LogRecord

    if args.file == "-":
        audio, path = read_stdin_bytes("audio (-)"), None
    else:
        file = Path(args.file)
        if not file.is_file():
            raise ValueError(f"audio file not found: {args.file}")
        audio, path = file.read_bytes(), str(file.resolve())
        if not audio:
            raise ValueError(f"audio file {args.file} is empty")
    media_type = _audio_type(audio, args.type, args.file)
    options = provider_options(args.option)
    target = client.settings.resolve(args.model)  # an unknown model: an error, nothing logged
    started = time.perf_counter()
    result = failed = None
    try:
        result = client.transcribe(
            audio,
            model=args.model,
            language=args.language,
            prompt=args.prompt,
            mime_type=media_type,
            timeout=args.timeout,
            **options,
        )
    except FMClientError as error:
        failed = error
    # A failed call is logged too, with why (as a failed chat turn is).

    record = LogRecord.for_operation(
        "transcribe",
        result,
        prompt=args.prompt or "",
        answer=result.text if result is not None else "",
        model=target.model,
        provider=target.provider,
        options={"language": args.language, **options},
        duration=time.perf_counter() - started,
        attachments=[Attachment.of(audio, media_type, path)],
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
                "text": result.text,
                "language": result.language,
                "duration": result.duration,
                "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in result.segments],
                "model": result.model,
                "provider": result.provider,
                "usage": None if result.usage is None else result.usage.to_dict(),
                "cost": None if cost is None else cost.to_dict(),
                "cost_reason": result.cost_reason,
            }
        )
    else:
        sys.stdout.write(result.text + "\n")
    return 0 if logged else EXIT_ERROR


def _audio_type(audio: bytes, declared: str | None, name: str) -> str:
    """The audio's MIME type: ``--type`` checked against the bytes, else what the bytes say."""
    from fmclient import _media

    what = "audio on stdin" if name == "-" else f"audio file {name}"
    try:
        return _media.resolve_type(audio, "audio", declared, None if name == "-" else Path(name).name, what)
    except ValueError as error:
        if declared is None and "could not be told" in str(error):
            raise ValueError(
                f"{what}: its type could not be told from its bytes (it is not WAV, MP3, FLAC, OGG, WebM, "
                "M4A/MP4, AAC or AIFF); say what it is with --type MIME"
            ) from None
        raise
