"""Real media made in the tests: WAV audio (the stdlib ``wave`` module, or speech from Debian's
``espeak-ng``), PDFs written by hand with a real page tree and cross-reference table, a DOCX
(an Office Open XML ZIP) and the first bytes of other containers for sniffing."""

from __future__ import annotations

import io
import math
import shutil
import struct
import subprocess
import wave
import zipfile

__all__ = ["docx", "espeak_wav", "mp3_frames", "mp4_head", "pdf", "wav"]


def wav(seconds: float = 0.5, rate: int = 8000, tone: float = 440.0) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * tone * i / rate))) for i in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples)
    return out.getvalue()


def espeak_wav(text: str) -> bytes | None:
    """Real speech: ``espeak-ng`` writing a WAV to stdout; None when it is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    return subprocess.run([program, "--stdout", text], check=True, capture_output=True, timeout=30).stdout


def pdf(pages: list[str], image_bytes: int = 0) -> bytes:
    """A valid PDF with one page per text, Helvetica text, and a correct xref table. With
    ``image_bytes``, each page also shows a grey image of about that size (noise: a scanned page,
    as the media bench sends)."""
    import random

    noise = random.Random(len(pages))
    side = int(image_bytes**0.5)
    font = 3 + (3 if side else 2) * len(pages)
    kids = " ".join(f"{3 + (3 if side else 2) * i} 0 R" for i in range(len(pages)))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
    ]
    for i, text in enumerate(pages):
        page = 3 + (3 if side else 2) * i
        stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
        image = ""
        if side:
            stream = f"q {side} 0 0 {side} 72 300 cm /Im1 Do Q ".encode() + stream
            image = f" /XObject << /Im1 {page + 2} 0 R >>"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page + 1} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >>{image} >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        if side:
            pixels = noise.randbytes(side * side)
            objects.append(
                b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (side, side, len(pixels)) + pixels + b"\nendstream"
            )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx(text: str = "Hello") -> bytes:
    """A minimal Word document (the parts a DOCX needs: content types, the document body)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        archive.writestr(
            "word/document.xml",
            '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>",
        )
    return out.getvalue()


def mp3_frames(count: int = 4) -> bytes:
    """MPEG-1 layer III frames (128 kbit/s, 44.1 kHz) of silence: what an MP3 file starts with."""
    header = b"\xff\xfb\x90\x00"
    return (header + bytes(413)) * count


def mp4_head(brand: bytes = b"isom") -> bytes:
    """The ``ftyp`` box an MP4 / M4A file starts with, and an empty ``mdat``."""
    ftyp = struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x02\x00" + brand + b"mp41"
    return ftyp + struct.pack(">I", 16) + b"mdat" + bytes(8)


def ebml_head(doctype: bytes | None = b"webm") -> bytes:
    """The EBML header a WebM or Matroska file starts with (as mkvmerge writes it: versions, ID
    and size lengths, then the DocType; None leaves the DocType out, EBML's default "matroska"),
    followed by the start of an empty Segment."""

    def element(element_id: bytes, payload: bytes) -> bytes:
        return element_id + bytes([0x80 | len(payload)]) + payload

    fields = [
        element(b"\x42\x86", b"\x01"),  # EBMLVersion
        element(b"\x42\xf7", b"\x01"),  # EBMLReadVersion
        element(b"\x42\xf2", b"\x04"),  # EBMLMaxIDLength
        element(b"\x42\xf3", b"\x08"),  # EBMLMaxSizeLength
    ]
    if doctype is not None:
        fields.append(element(b"\x42\x82", doctype))
    fields += [element(b"\x42\x87", b"\x04"), element(b"\x42\x85", b"\x02")]  # DocTypeVersion, ...ReadVersion
    header = b"".join(fields)
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(header)]) + header + b"\x18\x53\x80\x67\x01" + bytes(7)
