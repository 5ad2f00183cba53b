"""Checks every layer of configuration shares (arguments, config files, environment variables),
in the data layer so that anything above (config, the provider base) can call them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from fmclient.errors import ConfigurationError

__all__ = ["DEFAULT_MAX_THREADS", "check_number", "max_threads"]


def check_number(
    value: Any, what: str, *, integer: bool = False, allow_none: bool = False, positive: bool = False
) -> Any:
    """The one check every numeric setting gets, whichever layer it comes from (argument, config
    file, environment variable): a finite number, an integer where one is meant, never negative,
    and above zero where zero makes no sense (a timeout). ``what`` names the setting or variable."""
    if value is None and allow_none:
        return None
    given = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise ConfigurationError(f"{what} must be {kind}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigurationError(f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{what} must be a finite number, got {given!r}")
    if positive and value <= 0:
        raise ConfigurationError(f"{what} must be greater than 0, got {given!r}")
    if value < 0:
        raise ConfigurationError(f"{what} must not be negative, got {given!r}")
    return value


#: Threads in the pool that runs blocking SDKs (boto3, llama.cpp) for async calls.
DEFAULT_MAX_THREADS = 16


def max_threads(env: Mapping[str, str] | None = None) -> int:
    """``FMCLIENT_MAX_THREADS`` checked like every other setting (a positive integer), read when
    the pool is first needed, never at import; empty or unset means the default."""
    raw = (os.environ if env is None else env).get("FMCLIENT_MAX_THREADS", "")
    if not raw.strip():
        return DEFAULT_MAX_THREADS
    count: int = check_number(raw, "environment variable FMCLIENT_MAX_THREADS", integer=True, positive=True)
    return count
