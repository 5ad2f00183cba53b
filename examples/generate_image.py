"""Generate an image and save it: Amazon Titan Image Generator v2 on Bedrock by default.

    python generate_image.py "a red bicycle" bike.png
    FMCLIENT_IMAGE_MODEL=gpt-image python generate_image.py "a red bicycle" bike.png   # OpenAI

Any image model works unchanged: ``titan-image``, ``nova-canvas``, ``gpt-image``, ``gemini-image``.
"""

import sys

import fmclient

prompt = sys.argv[1] if len(sys.argv) > 1 else "a red bicycle leaning on a lamp post"
path = sys.argv[2] if len(sys.argv) > 2 else "image.png"

try:
    result = fmclient.generate_image(prompt, size="1024x1024")
except fmclient.ContentFilterError as error:
    raise SystemExit(f"refused by the provider's content filter: {error}") from None
except fmclient.ConfigurationError as error:
    raise SystemExit(f"not configured: {error}") from None

image = result.images[0]
image.save(path)
print(f"{result.provider}/{result.model} made {len(result.images)} image(s)")
print(f"wrote {path} ({image.mime_type}, {len(image.data)} bytes)")
