"""Per-model token-counting profiles: encoding, message framing, image rules, hidden overheads.

A profile is everything the estimator needs to know about a model name. Names are matched
by prefix after normalising provider prefixes (``openai/gpt-4o``), fine-tune names
(``ft:gpt-4o-mini:org::id``) and case. Two prompt *dialects* exist:

* ``chatml`` (gpt-3.5, gpt-4, gpt-4o, gpt-4.1): ``<|im_start|>role<|im_sep|>text<|im_end|>``,
  3 tokens of framing per message and a 3-token reply primer.
* ``harmony`` (gpt-5 family, o-series): ``<|start|>role<|message|>text<|end|>``, the same
  3 tokens per message but a 2-token primer (``<|start|>assistant``; the channel that
  follows is sampled), which is why reasoning models bill one token less than the chat
  formula. Tool calls and results carry channel headers.

The constants marked *calibrated* were fitted on real recordings (see
``tests/test_estimate_accuracy.py``); the others come from OpenAI's published rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from budgetguard._estimate._cache import text_counter
from budgetguard._tokenizer import encoding_name_for_model, get_encoding

__all__ = ["ImageRule", "Profile", "normalize_model", "profile_for"]

Dialect = Literal["chatml", "harmony"]


@dataclass(frozen=True, slots=True)
class ImageRule:
    """How a model bills an image: 512px tiles (``base + per_tile * tiles``) or 32px patches."""

    kind: Literal["tile", "patch"]
    base: int = 0
    per_tile: int = 0
    multiplier: float = 0.0
    max_patches: int = 1536


# Published per-model image constants (OpenAI "Images and vision", calculating costs).
_TILE_4O = ImageRule("tile", base=85, per_tile=170)
_TILE_4O_MINI = ImageRule("tile", base=2833, per_tile=5667)
_TILE_O_SERIES = ImageRule("tile", base=75, per_tile=150)
_TILE_GPT5 = ImageRule("tile", base=70, per_tile=140)
_TILE_CUA = ImageRule("tile", base=65, per_tile=129)
# Patch multipliers. gpt-5 mini/nano and the gpt-5.2+ models bill 1.2x / 1.5x in practice
# (measured publicly against the API), not the 1.62x / 2.46x the docs once listed.
_PATCH_4_1_MINI = ImageRule("patch", multiplier=1.62)
_PATCH_4_1_NANO = ImageRule("patch", multiplier=2.46)
_PATCH_O4_MINI = ImageRule("patch", multiplier=1.72)
_PATCH_GPT5_MINI = ImageRule("patch", multiplier=1.2)
_PATCH_GPT5_NANO = ImageRule("patch", multiplier=1.5)


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    dialect: Dialect = "chatml"
    tokens_per_message: int = 3
    # Added to the name's own tokens. -1 for gpt-3.5-turbo-0301, where a name replaces the role.
    tokens_per_name: int = 1
    image: ImageRule | None = None
    # Tokens the server adds to every prompt of this model (a hidden preamble).
    hidden_prompt: int = 0
    note: str = ""


_FAMILIES: tuple[tuple[str, _Family], ...] = (
    # gpt-3.5-turbo-0301 framed messages with 4 tokens and let a name replace the role.
    ("gpt-3.5-turbo-0301", _Family("gpt-3.5-turbo-0301", tokens_per_message=4, tokens_per_name=-1)),
    ("gpt-35-turbo-0301", _Family("gpt-3.5-turbo-0301", tokens_per_message=4, tokens_per_name=-1)),
    ("gpt-3.5-turbo-instruct", _Family("gpt-3.5-turbo-instruct")),
    ("gpt-3.5", _Family("gpt-3.5-turbo")),
    ("gpt-35", _Family("gpt-3.5-turbo")),
    ("gpt-4o-mini", _Family("gpt-4o-mini", image=_TILE_4O_MINI)),
    ("gpt-4o", _Family("gpt-4o", image=_TILE_4O)),
    ("chatgpt-4o", _Family("gpt-4o", image=_TILE_4O)),
    ("gpt-4.1-mini", _Family("gpt-4.1-mini", image=_PATCH_4_1_MINI)),
    ("gpt-4.1-nano", _Family("gpt-4.1-nano", image=_PATCH_4_1_NANO)),
    ("gpt-4.1", _Family("gpt-4.1", image=_TILE_4O)),
    ("gpt-4.5", _Family("gpt-4.5", image=_TILE_4O)),
    ("gpt-4-turbo", _Family("gpt-4-turbo", image=_TILE_4O)),
    ("gpt-4-vision", _Family("gpt-4-turbo", image=_TILE_4O)),
    ("gpt-4-1106-vision", _Family("gpt-4-turbo", image=_TILE_4O)),
    ("gpt-4", _Family("gpt-4", image=_TILE_4O)),
    ("computer-use", _Family("computer-use", image=_TILE_CUA)),
    ("gpt-5-mini", _Family("gpt-5-mini", "harmony", image=_PATCH_GPT5_MINI)),
    ("gpt-5-nano", _Family("gpt-5-nano", "harmony", image=_PATCH_GPT5_NANO)),
    ("gpt-5-chat", _Family("gpt-5", "harmony", image=_TILE_GPT5)),
    ("gpt-5-codex", _Family("gpt-5", "harmony", image=_TILE_GPT5)),
    ("gpt-5-pro", _Family("gpt-5", "harmony", image=_TILE_GPT5)),
    ("gpt-5.1", _Family("gpt-5.1", "harmony", image=_TILE_GPT5)),
    ("gpt-5.", _Family("gpt-5.x", "harmony", image=_PATCH_GPT5_MINI)),
    ("gpt-5", _Family("gpt-5", "harmony", image=_TILE_GPT5)),
    ("gpt-oss", _Family("gpt-oss", "harmony")),
    ("codex-mini", _Family("o4-mini", "harmony", image=_PATCH_O4_MINI)),
    ("o4-mini", _Family("o4-mini", "harmony", image=_PATCH_O4_MINI)),
    # o1-mini bills a fixed preamble on top of the harmony formula (calibrated).
    ("o1-mini", _Family("o1-mini", "harmony", hidden_prompt=8)),
    ("o1-preview", _Family("o1-preview", "harmony")),
    ("o3-mini", _Family("o3-mini", "harmony")),
    ("o1", _Family("o1", "harmony", image=_TILE_O_SERIES)),
    ("o3", _Family("o3", "harmony", image=_TILE_O_SERIES)),
    ("o4", _Family("o4", "harmony", image=_TILE_O_SERIES)),
    ("text-embedding-", _Family("embedding")),
    ("davinci-002", _Family("completion")),
    ("babbage-002", _Family("completion")),
)

# The bare alias served gpt-3.5-turbo-0301 (4 tokens per message) before it moved to
# 0613/0125 (3 per message). The body cannot say which snapshot answers, so we count the
# framing that bills more: never an under-estimate, at most one token per message over.
_ALIAS_ASSUMPTIONS = {
    "gpt-3.5-turbo": (
        "gpt-3.5-turbo-0301",
        "the gpt-3.5-turbo alias has served snapshots with 3 and 4 tokens of framing per "
        "message; counted the larger (0301); pin a dated snapshot for an exact count",
    ),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """What the estimator knows about one model name."""

    model: str
    family: str
    encoding_name: str
    #: False when neither the encoding nor the family was recognised (a fallback was used).
    known: bool
    dialect: Dialect
    tokens_per_message: int
    tokens_per_name: int
    #: Tokens that prime the reply (3 for chatml; 2 for harmony: the "reasoning -1").
    reply_priming: int
    hidden_prompt: int
    image: ImageRule | None
    #: Plain token count of a text in this model's encoding (no special tokens recognised),
    #: remembered per text (``_cache.text_counter``).
    count: Callable[[str], int] = field(repr=False, compare=False)
    assumptions: tuple[str, ...] = ()
    #: ``count`` of the usual role names, done once: every chat message has a role.
    role_tokens: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def count_role(self, role: str) -> int:
        tokens = self.role_tokens.get(role)
        return self.count(role) if tokens is None else tokens


def normalize_model(model: str) -> str:
    """Lower-case, without provider prefix or fine-tune suffix: ``ft:gpt-4o:org::x`` -> ``gpt-4o``."""
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_cache: dict[str, Profile] = {}
_cache_lock = threading.Lock()


def profile_for(model: str) -> Profile:
    """The (cached) profile for a model name; unknown names fall back to gpt-4o rules."""
    profile = _cache.get(model)
    if profile is None:
        profile = _build(model)
        with _cache_lock:
            if len(_cache) > 4096:  # model names come from callers: keep the cache bounded
                _cache.clear()
            _cache[model] = profile
    return profile


def _build(model: str) -> Profile:
    name = normalize_model(model)
    assumptions: list[str] = []
    alias = _ALIAS_ASSUMPTIONS.get(name)
    lookup = name
    if alias is not None:
        lookup, note = alias
        assumptions.append(note)
    family = next((fam for prefix, fam in _FAMILIES if lookup.startswith(prefix)), None)
    encoding_name, encoding_known = encoding_name_for_model(name)
    known = family is not None and encoding_known
    if family is None:
        family = _Family("gpt-4o", image=_TILE_4O)
        assumptions.append(
            f"unknown model {model!r}: counted with {encoding_name} and gpt-4o message framing"
        )
    # Shared by every model with this encoding, and remembered: histories resend the same texts.
    count = text_counter(encoding_name, get_encoding(encoding_name).encode_ordinary)
    return Profile(
        model=model,
        family=family.name,
        encoding_name=encoding_name,
        known=known,
        dialect=family.dialect,
        tokens_per_message=family.tokens_per_message,
        tokens_per_name=family.tokens_per_name,
        reply_priming=2 if family.dialect == "harmony" else 3,
        hidden_prompt=family.hidden_prompt,
        image=family.image,
        count=count,
        assumptions=tuple(assumptions),
        role_tokens={role: count(role) for role in _ROLES},
    )
