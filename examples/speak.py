"""Read a text aloud and save the audio file.

    python speak.py "Hello from fmclient." hello.wav                        # Gemini TTS (WAV)
    python speak.py "Hello from fmclient." hello.wav gemini-tts-lite Puck   # faster, another voice

Gemini's TTS models answer raw PCM, which fmclient wraps as a WAV file. OpenAI's Speech API
makes mp3, opus, aac, flac, wav or pcm, chosen here from the output file's extension, but all its
models (gpt-4o-mini-tts, tts-1) retire on 2027-01-06.
"""

import sys

import fmclient

if len(sys.argv) < 3:
    raise SystemExit(__doc__)
text, path = sys.argv[1], sys.argv[2]
model = sys.argv[3] if len(sys.argv) > 3 else "gemini-tts"
voice = sys.argv[4] if len(sys.argv) > 4 else "Kore"
extension = path.rsplit(".", 1)[-1].lower()

client = fmclient.Client()
try:
    speech = client.speak(text, model=model, voice=voice, format=extension)
except fmclient.UnsupportedFeatureError as error:
    raise SystemExit(f"{model} cannot make this: {error}") from None
except fmclient.ConfigurationError as error:
    raise SystemExit(f"not configured: {error}") from None

speech.save(path)
cost = f"${speech.cost.total:.6f}" if speech.cost is not None else speech.cost_reason
print(f"wrote {path} ({speech.mime_type}, {len(speech.data)} bytes) with {speech.provider}/{speech.model}")
print(f"-- cost: {cost}")
