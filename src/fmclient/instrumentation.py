"""The OpenTelemetry instrumentor of fmclient: ``opentelemetry-instrument python app.py`` traces every call.

OpenTelemetry's zero-code instrumentation (``opentelemetry-instrument``, from the
``opentelemetry-instrumentation`` package) loads every class registered under the
``opentelemetry_instrumentor`` entry point and calls its ``instrument()`` before the app runs.
fmclient registers :class:`FMClientInstrumentor` there (``pyproject.toml``), so an app that never
mentions telemetry gets fmclient's GenAI spans and metrics (:mod:`fmclient.telemetry`) from every
:class:`~fmclient.Client`, built before or after, until ``uninstrument()``::

    pip install "fmclient[otel]" opentelemetry-distro opentelemetry-exporter-otlp
    opentelemetry-instrument python app.py

Or in code, like any instrumentor::

    from fmclient.instrumentation import FMClientInstrumentor

    FMClientInstrumentor().instrument(tracer_provider=..., meter_provider=...)

A client that has its own :class:`~fmclient.telemetry.OpenTelemetryHook` (``telemetry=True``)
keeps it and gets no second one. This module imports only the OpenTelemetry API and the
instrumentation base class, never the SDK; ``import fmclient`` never imports it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from fmclient import hooks

__all__ = ["FMClientInstrumentor"]


class FMClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds one :class:`~fmclient.telemetry.OpenTelemetryHook` to every fmclient call while instrumented.

    ``instrument()`` takes the usual optional ``tracer_provider`` and ``meter_provider`` (the global
    ones by default, resolved when spans are made, so a provider the app sets up later is used).
    """

    _hook: hooks.Hook | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # The instrumented library is fmclient itself, importable since this class is: nothing
        # else has to be installed (the entry point's own distribution is fmclient).
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from fmclient.telemetry import OpenTelemetryHook

        hook = OpenTelemetryHook(
            tracer_provider=kwargs.get("tracer_provider"), meter_provider=kwargs.get("meter_provider")
        )
        self._hook = hook
        hooks.add_global_hook(hook)

    def _uninstrument(self, **kwargs: Any) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            hooks.remove_global_hook(hook)
