"""The first call: ask the default model (the embedded local model unless configured otherwise)."""

from fmclient import Client

client = Client()
reply = client.complete("What is a foundation model? Answer in one sentence.", max_tokens=60)
print(reply.text)
print(f"-- {reply.provider}/{reply.model}: {reply.usage.output_tokens} tokens, finish_reason={reply.finish_reason}")
