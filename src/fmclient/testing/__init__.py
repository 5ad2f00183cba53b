"""Test helpers for apps built on fmclient: the mock provider and its pytest fixture."""

from fmclient.testing.mock import MockCall, MockProvider

__all__ = ["MockCall", "MockProvider"]
