"""Amazon's event-stream framing, as Bedrock streams a model's events (``invoke-with-response-stream``).

Each message: a prelude (total length, headers length, a CRC32 of those eight bytes), headers
(name length, name, type 7 = string, value length, value), the payload, and a CRC32 of all
that came before, every integer big-endian. Bedrock sends each model event as an ``event``
message of type ``chunk`` whose JSON payload carries the event's JSON, base64-encoded, in
``bytes``: ``{"bytes": "eyJ0eXBlIjoi..."}``. Written from Amazon's format description, and read
back in the tests by botocore's own parser (through the anthropic SDK's Bedrock client).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib

__all__ = ["chunk_from_sse"]

_STRING = 7
_CHUNK_HEADERS = ((":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event"))


def _headers(pairs: tuple[tuple[str, str], ...]) -> bytes:
    out = bytearray()
    for name, value in pairs:
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def _message(headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return head + struct.pack(">I", zlib.crc32(head))


def chunk_from_sse(frame: bytes) -> bytes:
    """The event-stream message carrying the JSON of one SSE frame (``event: ...\\ndata: {...}``)."""
    data = next(line[len(b"data: ") :] for line in frame.splitlines() if line.startswith(b"data: "))
    json.loads(data)  # a frame that is not one JSON event is a bug in the caller
    payload = json.dumps({"bytes": base64.b64encode(data).decode()}).encode()
    return _message(_headers(_CHUNK_HEADERS), payload)
