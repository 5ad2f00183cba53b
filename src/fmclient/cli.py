"""The ``fmclient`` command: complete, embed, image, models, config.

Errors print one line on stderr and exit non-zero: never a traceback, never a key. Only the
provider that a command uses is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from fmclient.client import Client
from fmclient.errors import ConfigurationError, FMClientError
from fmclient.secret import redact

__all__ = ["main"]

# The module each adapter type needs, to tell "extra missing" without importing the SDK.
SDK_MODULES = {
    "anthropic": ("anthropic", "anthropic"),
    "openai": ("openai", "openai"),
    "gemini": ("google.genai", "gemini"),
    "bedrock": ("boto3", "bedrock"),
    "ollama": ("ollama", "ollama"),
    "llamacpp": ("llama_cpp", "local"),
}

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
    try:
        client = Client(config_path=args.config)
        if args.command == "complete":
            return _complete(client, args)
        if args.command == "embed":
            return _embed(client, args)
        if args.command == "image":
            return _image(client, args)
        if args.command == "models":
            return _models(client)
        return _config(client)
    except (FMClientError, ValueError, TypeError) as error:
        _fail(error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fmclient: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not a user error: still one line, unless debugging
        if os.environ.get("FMCLIENT_DEBUG"):
            raise
        _fail(error)
        return EXIT_ERROR


def _fail(error: BaseException) -> None:
    kind = type(error).__name__
    print(f"fmclient: {kind}: {redact(str(error))}", file=sys.stderr)


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
    settings = client.settings.provider_settings(provider)
    sdk = SDK_MODULES.get(settings.type)
    if sdk is not None and importlib.util.find_spec(sdk[0]) is None:
        return f'missing extra: pip install "fmclient[{sdk[1]}]"'
    try:
        client.provider(provider).check_ready(model)
    except FMClientError as error:
        return f"not ready: {redact(error.message)}"
    return "ready"


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


def _models(client: Client) -> int:
    from fmclient.pricing import INSTALL_HINT, price_data_version

    rows = []
    for alias in sorted(client.settings.aliases):
        try:
            target = client.settings.resolve(alias)
        except ConfigurationError as error:
            rows.append((alias, "?", "", redact(error.message)))
            continue
        price = _prices(client, target.provider, target.model)
        rows.append((alias, str(target), price, _readiness(client, target.provider, target.model)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    default = client.settings.default_model
    for alias, where, price, status in rows:
        marker = "*" if alias == default else " "
        print(f"{marker} {alias:<{width[0]}}  {where:<{width[1]}}  {price:<{width[2]}}  {status}")
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
