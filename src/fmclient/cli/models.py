"""``fmclient models``: every alias, its target, price, lifecycle and readiness; filterable."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmclient.cli._common import print_json
from fmclient.errors import ConfigurationError, FMClientError
from fmclient.secret import redact

if TYPE_CHECKING:
    from fmclient.client import Client


def add_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="every alias, what it resolves to, and whether it is ready")
    models.add_argument(
        "--ready", action="store_true", help="only the models ready to call (extra installed, key found)"
    )
    models.add_argument(
        "-q",
        "--query",
        action="append",
        metavar="TEXT",
        help="only aliases/targets containing TEXT (repeatable: all must match)",
    )
    models.add_argument("--json", action="store_true", help="one JSON object per model, in a list")


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
ModelColumn = tuple[str, Callable[[Any, str, str], str]]
MODEL_COLUMNS: list[ModelColumn] = [("price", _prices), ("lifecycle", _lifecycle), ("status", _readiness)]


def _matches(queries: list[str] | None, *texts: str) -> bool:
    haystack = " ".join(texts).lower()
    return all(query.lower() in haystack for query in queries or ())


def run(client: Client, args: argparse.Namespace) -> int:
    from fmclient.pricing import INSTALL_HINT, price_data_version

    headings = ["alias", "target", *(name for name, _ in MODEL_COLUMNS)]
    rows: list[list[str]] = []
    for alias in sorted(client.settings.aliases):
        try:
            target = client.settings.resolve(alias)
        except ConfigurationError as error:
            if not args.ready and _matches(args.query, alias):
                rows.append([alias, "?", *([""] * (len(MODEL_COLUMNS) - 1)), redact(error.message)])
            continue
        if not _matches(args.query, alias, str(target)):
            continue
        cells = [fill(client, target.provider, target.model) for _, fill in MODEL_COLUMNS]
        if args.ready and cells[-1] != "ready":
            continue
        rows.append([alias, str(target), *cells])
    default = client.settings.default_model
    if args.json:
        print_json([{**dict(zip(headings, row, strict=True)), "default": row[0] == default} for row in rows])
        return 0
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]

    def line(marker: str, cells: list[str]) -> str:
        return f"{marker} " + "  ".join(f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True)).rstrip()

    print(line(" ", [h.upper() for h in headings]))
    for row in rows:
        print(line("*" if row[0] == default else " ", row))
    print(f"\n* default model: {default} (from {client.settings.sources.get('default_model', 'default')})")
    version = price_data_version()
    print(f"prices: USD per million tokens, {version}" if version else f"prices: unknown; {INSTALL_HINT}")
    return 0
