"""Image input tokens: OpenAI's tile and patch formulas, and image sizes read from data URLs.

Tile models (gpt-4o, gpt-4.1, gpt-5, o-series) bill ``base + per_tile * tiles`` after
fitting the image in 2048x2048 and shrinking its short side to 768px; ``detail: low`` bills
``base`` alone. Patch models (gpt-4.1-mini/nano, o4-mini, gpt-5 mini/nano, gpt-5.2+) bill
32px patches (at most 1536, shrinking larger images) times a per-model multiplier, plus one
token per image (measured); ``detail`` does not change their bill.

Sizes come from the image header inside a ``data:`` URL (PNG, JPEG, GIF, WebP), decoding only
as much base64 as the header needs. A remote URL's size is unknown: the estimate assumes a
512x512 image and the upper bound reserves the largest image the model bills.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

from budgetguard._estimate._models import ImageRule

__all__ = [
    "ASSUMED_REMOTE_SIZE",
    "data_url_size",
    "image_size",
    "image_tokens",
    "max_image_tokens",
]

#: The size assumed for an image whose bytes the body does not carry.
ASSUMED_REMOTE_SIZE = (512, 512)
_PATCH = 32
_TILE = 512


def image_tokens(rule: ImageRule, width: int, height: int, detail: str | None) -> int:
    """Tokens one image of ``width`` x ``height`` pixels costs under ``rule``."""
    if rule.kind == "patch":
        return math.ceil(_patches(width, height, rule.max_patches) * rule.multiplier) + 1
    if detail == "low":
        return rule.base
    return rule.base + rule.per_tile * _tiles(width, height)


def max_image_tokens(rule: ImageRule, detail: str | None) -> int:
    """The most one image can cost under ``rule`` (any size)."""
    if rule.kind == "patch":
        return math.ceil(rule.max_patches * rule.multiplier) + 1
    if detail == "low":
        return rule.base
    # Fit in 2048x2048 then short side 768: at most 4 x 2 tiles.
    return rule.base + rule.per_tile * 8


def _tiles(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(int(w) / _TILE) * math.ceil(int(h) / _TILE)


def _patches(width: int, height: int, max_patches: int) -> int:
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches <= max_patches:
        return patches
    # Shrink to fit the patch budget, then so the width is a whole number of patches.
    shrink = math.sqrt(_PATCH * _PATCH * max_patches / (width * height))
    w, h = width * shrink, height * shrink
    shrink = math.floor(w / _PATCH) / (w / _PATCH)
    w, h = w * shrink, h * shrink
    return min(max_patches, math.ceil(w / _PATCH) * math.ceil(h / _PATCH))


def data_url_size(url: str) -> tuple[int, int] | None:
    """Pixel size of a base64 ``data:`` URL image, or None if it cannot be read."""
    comma = url.find(",")
    if comma < 0 or ";base64" not in url[:comma].lower():
        return None
    payload = url[comma + 1 :]
    # Most headers sit in the first bytes; JPEG may hide its frame header behind EXIF data.
    for chars in (4096, 65536, len(payload)):
        chunk = payload[: chars - chars % 4] if chars < len(payload) else payload
        try:
            data = base64.b64decode(chunk + "=" * (-len(chunk) % 4))
        except (binascii.Error, ValueError):
            return None
        size = image_size(data)
        if size is not None or chars >= len(payload):
            return size
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG, GIF or WebP header; None if unknown or truncated."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return _valid(width, height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return _valid(width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _valid(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return _valid(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return _valid((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _valid(width, height)
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    end = len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return _valid(width, height)
        if marker == 0xD9 or length < 2:
            return None
        i += 2 + length
    return None
