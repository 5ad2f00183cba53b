"""Small valid images made in memory: for tests that send image input, and for the fakes'
generated images. :func:`decode_png` is the tests' check that what came back is a real PNG."""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_png(width: int = 4, height: int = 4, color: tuple[int, int, int] = (0xFF, 0x80, 0x00)) -> bytes:
    """A one-colour RGB PNG (orange by default), valid for any decoder."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(color) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


def generated_png(prompt: str, index: int, width: int, height: int) -> bytes:
    """What an image fake "generates": a PNG of the asked size, its colour derived from the
    prompt and the image's index, so tests can tell images apart."""
    digest = hashlib.sha256(f"{prompt}#{index}".encode()).digest()
    return small_png(width, height, (digest[0], digest[1], digest[2]))


@dataclass(frozen=True)
class DecodedPNG:
    width: int
    height: int
    color: tuple[int, int, int]


def decode_png(data: bytes) -> DecodedPNG:
    """Check a PNG the way a decoder would (signature, every chunk's CRC, IHDR, the pixel data
    inflating to the size IHDR says) and return its size and first pixel. AssertionError if not."""
    assert data.startswith(PNG_SIGNATURE), "not a PNG signature"
    position = len(PNG_SIGNATURE)
    chunks: list[tuple[bytes, bytes]] = []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in the {kind!r} chunk"
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", "PNG must start with IHDR and end with IEND"
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour_type) == (8, 2), "the fakes make 8-bit RGB PNGs"
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(pixels) == height * (1 + 3 * width), "pixel data does not match IHDR's size"
    return DecodedPNG(width, height, (pixels[1], pixels[2], pixels[3]))
