"""Content that is not plain text: images, files and audio inside messages.

Images are counted exactly when their bytes are in the body (a ``data:`` URL); everything
else here is an estimate that marks the request inexact and says why, because the server
expands it in ways the body does not show (a remote image's size, a PDF's extracted text and
page images, audio duration, anything referenced by id).
"""

from __future__ import annotations

import base64
import binascii
import math

from budgetguard._estimate._images import (
    ASSUMED_REMOTE_SIZE,
    data_url_size,
    image_tokens,
    max_image_tokens,
)
from budgetguard._estimate._models import ImageRule, Profile
from budgetguard._estimate._result import Tally

__all__ = ["add_audio", "add_file", "add_image", "add_unsized_image"]

_FALLBACK_IMAGE_RULE = ImageRule("tile", base=85, per_tile=170)
# A file's bytes become text (and, for PDFs, page images) server-side: about one token per
# this many bytes of file, with the same again reserved in the upper bound.
_FILE_BYTES_PER_TOKEN = 64
# Audio input bills about 10 tokens a second; without a readable header assume 16 kB/s.
_AUDIO_TOKENS_PER_SECOND = 10
_AUDIO_BYTES_PER_SECOND = 16_000


def _rule(profile: Profile, tally: Tally) -> ImageRule:
    if profile.image is not None:
        return profile.image
    tally.note(f"no image rule known for {profile.model!r}: counted images with gpt-4o's")
    return _FALLBACK_IMAGE_RULE


def add_image(tally: Tally, profile: Profile, url: str, detail: str | None) -> None:
    """One image given by URL: exact for a readable data URL, an assumption for a remote one."""
    size = data_url_size(url) if url.startswith("data:") else None
    if size is None:
        what = "a remote image" if not url.startswith("data:") else "an image whose header could not be read"
        add_unsized_image(tally, profile, detail, what)
        return
    tokens = image_tokens(_rule(profile, tally), size[0], size[1], _detail(detail, tally))
    tally.tokens += tokens
    tally.image_tokens += tokens


def add_unsized_image(tally: Tally, profile: Profile, detail: str | None, what: str) -> None:
    """An image whose size the body does not carry (remote URL, file id): assume a typical size."""
    rule = _rule(profile, tally)
    detail = _detail(detail, tally)
    assumed = image_tokens(rule, *ASSUMED_REMOTE_SIZE, detail)
    worst = max_image_tokens(rule, detail)
    tally.tokens += assumed
    tally.image_tokens += assumed
    if worst == assumed:  # low detail on a tile model costs the same at any size
        return
    width, height = ASSUMED_REMOTE_SIZE
    tally.inexact(
        f"{what} has unknown size: assumed {width}x{height} ({assumed} tokens); "
        f"the upper bound reserves the largest ({worst})",
        allowance=worst - assumed,
    )


def _detail(detail: str | None, tally: Tally) -> str | None:
    if detail in (None, "auto", "low", "high"):
        return detail
    tally.note(f"image detail {detail!r} is not known: counted as 'high'")
    return "high"


def add_file(tally: Tally, file_data: str | None, what: str) -> None:
    """A file attached by data (estimated from its size) or by id (unknown)."""
    if not file_data:
        tally.inexact(f"{what} is referenced by id: its contents are not in the body")
        return
    size = _decoded_size(file_data)
    tokens = math.ceil(size / _FILE_BYTES_PER_TOKEN)
    tally.tokens += tokens
    tally.inexact(
        f"{what} is expanded server-side (text, page images): estimated from its {size} bytes",
        allowance=tokens,
    )


def add_audio(tally: Tally, data: str | None, what: str) -> None:
    """Audio input: estimated from its duration (WAV header) or size."""
    tally.audio = True
    if not data:
        tally.inexact(f"{what} is referenced by id: its duration is unknown")
        return
    raw = _decode_head(data, 64)
    size = _decoded_size(data)
    seconds = size / _AUDIO_BYTES_PER_SECOND
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE" and len(raw) >= 32:
        byte_rate = int.from_bytes(raw[28:32], "little")
        if byte_rate > 0:
            seconds = size / byte_rate
    tokens = math.ceil(seconds * _AUDIO_TOKENS_PER_SECOND)
    tally.tokens += tokens
    tally.inexact(f"{what}: audio tokens estimated from its duration (~{seconds:.1f}s)", allowance=tokens)


def _payload(data: str) -> str:
    comma = data.find(",") if data.startswith("data:") else -1
    return data[comma + 1 :] if comma >= 0 else data


def _decoded_size(data: str) -> int:
    payload = _payload(data).rstrip("=")
    return len(payload) * 3 // 4


def _decode_head(data: str, chars: int) -> bytes:
    chunk = _payload(data)[:chars]
    try:
        return base64.b64decode(chunk + "=" * (-len(chunk) % 4))
    except (binascii.Error, ValueError):
        return b""
