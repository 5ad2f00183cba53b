"""pytest plugin (registered through the ``pytest11`` entry point): the ``fmclient_mock`` fixture.

Any test that names ``fmclient_mock`` runs with every model answered by a fresh
:class:`~fmclient.testing.MockProvider` — no network, no keys, no code change in the app.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fmclient.testing.mock import MockProvider


@pytest.fixture
def fmclient_mock() -> Iterator[MockProvider]:
    with MockProvider() as mock:
        yield mock
