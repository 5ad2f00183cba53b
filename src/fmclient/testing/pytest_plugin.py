"""pytest plugin (registered through the ``pytest11`` entry point): the ``fmclient_mock`` fixture.

Any test that names ``fmclient_mock`` runs with every model answered by a fresh
:class:`~fmclient.testing.MockProvider` — no network, no keys, no code change in the app.
It enforces known models' profiles like production; mark a test
``@pytest.mark.fmclient_mock(enforce_profiles=False)`` to let the mock accept everything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fmclient.testing.mock import MockProvider


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fmclient_mock(**kwargs): keyword arguments for the fmclient_mock fixture's MockProvider"
    )


@pytest.fixture
def fmclient_mock(request: pytest.FixtureRequest) -> Iterator[MockProvider]:
    marker = request.node.get_closest_marker("fmclient_mock")
    with MockProvider(**(marker.kwargs if marker else {})) as mock:
        yield mock
