"""Stream an answer to the terminal as it is generated, then read the assembled completion."""

from fmclient import Client

client = Client()
with client.stream("Name three colours of the rainbow.", max_tokens=40, temperature=0) as stream:
    for chunk in stream:
        print(chunk.text, end="", flush=True)
print()
usage = stream.completion.usage
print(f"-- finish_reason={stream.finish_reason}, tokens in/out={usage.input_tokens}/{usage.output_tokens}")
