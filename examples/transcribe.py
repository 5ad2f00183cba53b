"""Transcribe an audio file (WAV, MP3, FLAC, OGG, WebM, M4A...) and print the transcript.

    python transcribe.py meeting.mp3                          # OpenAI gpt-transcribe
    python transcribe.py meeting.mp3 gemini-flash             # Gemini audio understanding
    python transcribe.py interview.wav openai/whisper-1       # timed segments too (until 2027-02-26)

Any transcription model works unchanged; a file the model cannot take (a format it does not
read, a file over its size limit) is refused before anything is sent.
"""

import sys

import fmclient

if len(sys.argv) < 2:
    raise SystemExit(__doc__)
path = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else "gpt-transcribe"

client = fmclient.Client()
try:
    with open(path, "rb") as audio:  # an open binary file; bytes or a pathlib.Path work too
        result = client.transcribe(audio, model=model)
except fmclient.UnsupportedFeatureError as error:
    raise SystemExit(f"{model} cannot take this file: {error}") from None
except fmclient.ConfigurationError as error:
    raise SystemExit(f"not configured: {error}") from None

print(result.text)
for segment in result.segments:
    print(f"  [{segment.start:6.2f}s - {segment.end:6.2f}s] {segment.text}")
cost = f"${result.cost.total:.6f}" if result.cost is not None else result.cost_reason
print(f"-- {result.provider}/{result.model}, language={result.language}, duration={result.duration}s, cost: {cost}")
