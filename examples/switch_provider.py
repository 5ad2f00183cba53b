"""Switching provider is configuration, not code.

The app asks for "claude-sonnet". Run it as is and Anthropic answers (with ANTHROPIC_API_KEY set);
re-point the alias and something else answers, with this file unchanged:

    FMCLIENT_ALIAS_CLAUDE_SONNET=bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0 python switch_provider.py
    FMCLIENT_ALIAS_CLAUDE_SONNET=llamacpp/smollm2-135m-instruct python switch_provider.py   # offline
"""

import fmclient

try:
    reply = fmclient.complete("Say hello in French.", model="claude-sonnet", max_tokens=20)
except fmclient.ConfigurationError as error:
    # No key for the provider the alias points to: say so plainly, as an app would.
    raise SystemExit(f"not configured: {error}") from None
print(f"{reply.provider}/{reply.model} answered: {reply.text.strip()}")
