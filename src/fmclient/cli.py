"""The ``fmclient`` command: complete, embed, image, models, config.

Errors print one line on stderr and exit non-zero: never a traceback, never a key. Only the
provider that a command uses is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from fmclient.client import Client
from fmclient.errors import ConfigurationError, FMClientError
from fmclient.secret import redact

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmclient", description="Talk to any foundation model.")
    parser.add_argument("--config", help="config file to read (default: $FMCLIENT_CONFIG, ./fmclient.toml, user dir)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    complete = commands.add_parser("complete", help="answer a prompt (streams to the terminal)")
    complete.add_argument("prompt", nargs="?", help="the prompt; read from stdin when omitted or '-'")
    complete.add_argument("-m", "--model", help="alias or provider/model-id (default: the configured default)")
    complete.add_argument("-s", "--system", help="system prompt")
    complete.add_argument("--max-tokens", type=int, help="most tokens to generate")
    complete.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    complete.add_argument("--timeout", type=float, help="deadline for the whole call, in seconds")
    complete.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    complete.add_argument("--json", action="store_true", help="print the whole Completion as JSON")

    embed = commands.add_parser("embed", help="embed texts; prints one JSON line per text")
    embed.add_argument("texts", nargs="*", help="texts to embed; lines of stdin when none are given")
    embed.add_argument("-m", "--model", help="embedding model alias or provider/model-id")

    batch = commands.add_parser("batch", help="answer every prompt of a JSONL file; resumable")
    batch.add_argument("prompts", help="JSONL: one prompt string, or {prompt|messages, id?, system?}, per line")
    batch.add_argument("-m", "--model", help="alias or provider/model-id (default: the configured default)")
    batch.add_argument("-o", "--output", required=True, help="results JSONL; rerun with it to finish a broken run")
    batch.add_argument("-c", "--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
    batch.add_argument("-s", "--system", help="system prompt for every item without its own")
    batch.add_argument("--max-tokens", type=int, help="most tokens to generate per item")
    batch.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    batch.add_argument("--timeout", type=float, help="deadline for each item's call, in seconds")
    batch.add_argument("--redo-failed", action="store_true", help="send again the items an earlier run failed")
    image = commands.add_parser("image", help="generate images; writes them and prints their paths")
    image.add_argument("prompt", help="what to draw")
    image.add_argument("-o", "--output", default="image.png", help="file to write (more images: NAME-2.png, ...)")
    image.add_argument("-m", "--model", help="image model alias or provider/model-id (default: default_image_model)")
    image.add_argument("--size", help="WIDTHxHEIGHT, an aspect ratio such as 16:9, or auto")
    image.add_argument("-n", type=int, default=1, help="how many images")
    image.add_argument("--seed", type=int, help="seed, for models that take one")
    image.add_argument("--negative", help="what the image must not show (negative prompt)")
    image.add_argument("--quality", help="quality level, for models that take one")
    image.add_argument("--timeout", type=float, help="deadline for the whole call, in seconds")

    commands.add_parser("models", help="every alias, what it resolves to, and whether it is ready")
    commands.add_parser("config", help="the effective configuration and where each value came from")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _Warnings() as warned:
        code = _run(args, warned)
        if code == 0:
            for message in warned.messages:
                print(f"fmclient: warning: {message}", file=sys.stderr)
        return code


def _run(args: argparse.Namespace, warned: _Warnings) -> int:
    try:
        client = Client(config_path=args.config)
        if args.command == "complete":
            return _complete(client, args)
        if args.command == "embed":
            return _embed(client, args)
        if args.command == "batch":
            return _batch(client, args)
        if args.command == "image":
            return _image(client, args)
        if args.command == "models":
            return _models(client)
        return _config(client)
    except (FMClientError, ValueError, TypeError) as error:
        _fail(error, warned.messages)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fmclient: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not a user error: still one line, unless debugging
        if os.environ.get("FMCLIENT_DEBUG"):
            raise
        _fail(error, warned.messages)
        return EXIT_ERROR


class _Warnings:
    """Collects what fmclient logs at WARNING during a command (a retiring model, say), so the CLI
    prints it as its own ``fmclient: warning:`` line after a command that succeeded, or folds it into
    the one error line of a command that failed, instead of Python's bare last-resort output."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        outer = self

        class _Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.messages.append(redact(record.getMessage()))

        self._logger = logging.getLogger("fmclient")
        self._handler = _Collect(logging.WARNING)

    def __enter__(self) -> _Warnings:
        self._logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)


def _fail(error: BaseException, warnings: Sequence[str] = ()) -> None:
    kind = type(error).__name__
    also = "".join(f" (warning: {message})" for message in warnings)
    print(f"fmclient: {kind}: {redact(str(error))}{also}", file=sys.stderr)


def _read_stdin(what: str) -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise ValueError(f"no {what} given: pass it as an argument or pipe it on stdin")
    return sys.stdin.read()


def _complete(client: Client, args: argparse.Namespace) -> int:
    prompt = args.prompt if args.prompt not in (None, "-") else _read_stdin("prompt")
    params: dict[str, Any] = {
        "model": args.model,
        "system": args.system,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "timeout": args.timeout,
    }
    out: TextIO = sys.stdout
    if args.json or args.no_stream:
        completion = client.complete(prompt, **params)
        if args.json:
            json.dump(completion.to_dict(), out, indent=2)
        else:
            out.write(completion.text)
        out.write("\n")
        return 0
    with client.stream(prompt, **params) as stream:
        for chunk in stream:
            if chunk.text:
                out.write(chunk.text)
                out.flush()
    out.write("\n")
    return 0


def _embed(client: Client, args: argparse.Namespace) -> int:
    texts = list(args.texts) or [line for line in _read_stdin("texts").splitlines() if line.strip()]
    result = client.embed(texts, model=args.model)
    for text, vector in zip(texts, result.vectors, strict=True):
        print(json.dumps({"text": text, "embedding": vector}))
    return 0


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


def _batch(client: Client, args: argparse.Namespace) -> int:
    call_args = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "timeout": args.timeout,
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


def _image(client: Client, args: argparse.Namespace) -> int:
    result = client.generate_image(
        args.prompt,
        model=args.model,
        size=args.size,
        n=args.n,
        seed=args.seed,
        negative_prompt=args.negative,
        quality=args.quality,
        timeout=args.timeout,
    )
    for path, image in zip(image_paths(args.output, len(result.images)), result.images, strict=True):
        image.save(path)
        print(path)
    return 0


def image_paths(output: str, count: int) -> list[str]:
    """``bike.png`` for the first image, then ``bike-2.png``, ``bike-3.png``..."""
    stem, dot, suffix = output.rpartition(".")
    if not dot or "/" in suffix or os.sep in suffix:
        stem, dot, suffix = output, "", ""
    return [output] + [f"{stem}-{index}{dot}{suffix}" for index in range(2, count + 1)]


def _readiness(client: Client, provider: str, model: str) -> str:
    """ "ready", or what is missing: looked up without importing any provider SDK."""
    from fmclient.providers.readiness import READINESS, check

    settings = client.settings.provider_settings(provider)
    if settings.type in READINESS:
        missing = check(settings, model)
    else:  # a plugin adapter: only it knows; building it imports its module
        try:
            client.provider(provider).check_ready(model)
            missing = None
        except FMClientError as error:
            missing = error.message
    return "ready" if missing is None else f"not ready: {redact(missing)}"


def _lifecycle(client: Client, provider: str, model: str) -> str:
    from fmclient.deprecations import applies_to, deprecation

    settings = client.settings.provider_settings(provider)
    if not applies_to(settings):
        return ""  # another host's schedule (Bedrock, Vertex, an OpenAI-compatible server): not known here
    found = deprecation(settings.type, model)
    return str(found) if found else ""


def _prices(client: Client, provider: str, model: str) -> str:
    """``in $3/M out $15/M``: today's price per million tokens, from the price table."""
    from fmclient.pricing import PriceRef, model_prices

    settings = client.settings.provider_settings(provider)
    ref = PriceRef(settings.type, settings.base_url, client.settings.prices.get(provider))
    found = model_prices(ref, model)
    if not isinstance(found, tuple):
        return "price ?"

    def per_million(amount: Any) -> str:
        return "-" if amount is None else f"${amount.normalize():f}/M"

    tiered = " (tiered)" if found[2] else ""
    return f"in {per_million(found[0])} out {per_million(found[1])}{tiered}"


# The table's columns, in order: a heading and how to fill the cell for one alias.
ModelColumn = tuple[str, Callable[[Client, str, str], str]]
MODEL_COLUMNS: list[ModelColumn] = [("price", _prices), ("lifecycle", _lifecycle), ("status", _readiness)]


def _models(client: Client) -> int:
    from fmclient.pricing import INSTALL_HINT, price_data_version

    headings = ["alias", "target", *(name for name, _ in MODEL_COLUMNS)]
    rows: list[list[str]] = []
    for alias in sorted(client.settings.aliases):
        try:
            target = client.settings.resolve(alias)
        except ConfigurationError as error:
            rows.append([alias, "?", *([""] * (len(MODEL_COLUMNS) - 1)), redact(error.message)])
            continue
        cells = [fill(client, target.provider, target.model) for _, fill in MODEL_COLUMNS]
        rows.append([alias, str(target), *cells])
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    default = client.settings.default_model

    def line(marker: str, cells: list[str]) -> str:
        return f"{marker} " + "  ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True)).rstrip()

    print(line(" ", [h.upper() for h in headings]))
    for row in rows:
        print(line("*" if row[0] == default else " ", row))
    print(f"\n* default model: {default} (from {client.settings.sources.get('default_model', 'default')})")
    version = price_data_version()
    print(f"prices: USD per million tokens, {version}" if version else f"prices: unknown; {INSTALL_HINT}")
    return 0


def _config(client: Client) -> int:
    settings = client.settings
    sources = settings.sources

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
        provider = settings.providers[name]
        print(f"\n[providers.{name}]    # {sources.get('providers.' + name, 'default')}")
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
        for key, value in fields.items():
            if value is not None:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
