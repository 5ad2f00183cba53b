"""``fmclient image``: generate images, write them, print their paths."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import EXIT_ERROR, print_json

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
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
    image.add_argument("--json", action="store_true", help="print the paths, model, usage and cost as JSON")


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.cli._conversation import log_call
    from fmclient.logstore import Attachment

    model = args.model or client.settings.default_image_model
    options = {"size": args.size, "n": args.n, "seed": args.seed, "negative_prompt": args.negative}
    options["quality"] = args.quality
    paths: list[str] = []

    def generate() -> Any:
        result = client.generate_image(args.prompt, model=model, timeout=args.timeout, **options)
        paths.extend(image_paths(args.output, len(result.images)))
        for path, image in zip(paths, result.images, strict=True):
            image.save(path)
        return result

    # Logged with the prompt, usage and cost; the images by hash and path, never their bytes.
    result, logged = log_call(
        client,
        "image",
        model,
        generate,
        prompt=args.prompt,
        attachments=lambda result: [
            Attachment.of(image.data, image.mime_type, os.path.abspath(path))
            for path, image in zip(paths, result.images, strict=True)
        ],
        options=options,
    )
    if args.json:
        cost = result.cost
        print_json(
            {
                "paths": paths,
                "model": result.model,
                "provider": result.provider,
                "cost": None if cost is None else cost.to_dict(),
                "cost_reason": result.cost_reason,
            }
        )
    else:
        for path in paths:
            print(path)
    return 0 if logged else EXIT_ERROR


def image_paths(output: str, count: int) -> list[str]:
    """``bike.png`` for the first image, then ``bike-2.png``, ``bike-3.png``..."""
    stem, dot, suffix = output.rpartition(".")
    if not dot or "/" in suffix or os.sep in suffix:
        stem, dot, suffix = output, "", ""
    return [output] + [f"{stem}-{index}{dot}{suffix}" for index in range(2, count + 1)]
