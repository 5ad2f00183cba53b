"""`import fmclient` stays light: no provider SDK, no heavy dependency."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "anthropic",
    "openai",
    "google.genai",
    "boto3",
    "botocore",
    "ollama",
    "llama_cpp",
    "pydantic",
    "httpx",
    "httpx2",
    "tenacity",
]


def test_import_fmclient_imports_no_provider_sdk() -> None:
    code = f"import sys, fmclient, fmclient.testing\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_names() -> None:
    import fmclient

    for name in (
        "Client",
        "complete",
        "acomplete",
        "stream",
        "astream",
        "embed",
        "aembed",
        "Completion",
        "Message",
        "Usage",
        "ToolCall",
    ):
        assert hasattr(fmclient, name), name
    client = fmclient.Client()
    for method in ("complete", "acomplete", "stream", "astream", "embed", "aembed"):
        assert callable(getattr(client, method))
