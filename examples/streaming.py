"""Stream an answer to the terminal as it is generated, then read the assembled completion."""

from fmclient import Client

client = Client()
with client.stream("Name three colours of the rainbow.", max_tokens=40, temperature=0) as stream:
    for chunk in stream:
        print(chunk.text, end="", flush=True)
print()
completion = stream.completion
print(
    f"-- finish_reason={completion.finish_reason}, tokens in/out={completion.usage.input_tokens}/{completion.usage.output_tokens}"
)
