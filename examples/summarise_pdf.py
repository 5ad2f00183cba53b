"""Summarise a PDF with citations: Claude reads the document and says which page each claim is from.

    python summarise_pdf.py report.pdf
    python summarise_pdf.py report.pdf bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0

The file is sent as a document part (its type sniffed from its bytes); a model that cannot read
documents, or a PDF over the model's page limit, is refused before anything is sent.
"""

import sys
from pathlib import Path

import fmclient

if len(sys.argv) < 2:
    raise SystemExit("usage: summarise_pdf.py FILE.pdf [MODEL]")
pdf = Path(sys.argv[1])
model = sys.argv[2] if len(sys.argv) > 2 else "claude-sonnet"

try:
    reply = fmclient.complete(
        [
            {
                "role": "user",
                "content": [
                    {"type": "document", "document": pdf, "citations": True},
                    "Summarise this document in three sentences.",
                ],
            }
        ],
        model=model,
    )
except fmclient.UnsupportedFeatureError as error:
    raise SystemExit(f"this model cannot read it: {error}") from None
except fmclient.ConfigurationError as error:
    raise SystemExit(f"not configured: {error}") from None

print(reply.text)
for cited in reply.citations:
    where = f"{cited.location} {cited.start}-{cited.end}" if cited.location else "somewhere"
    print(f"  [{cited.document_name or cited.document_index}, {where}] {cited.cited_text!r}")
