"""What the estimator remembers between requests, so a long conversation is not re-encoded each step.

Agents resend their whole history, and the same tools, with every request. Three bounded
caches make estimating step ``k`` cost what is new at step ``k``:

* **Text counts** (``text_counter``): per encoding, the token count of each text seen, keyed
  by the text itself. A hit is one dict lookup (a string caches its hash); a message mutated
  in place holds a different string, so it misses. Bounded by entries and by characters held;
  the oldest quarter is dropped when either bound is passed.
* **Histories** (``count_history``): for a list of messages (or Responses input items) of
  ``MIN_HISTORY`` or more, what its counted prefix added up to (tokens, the state later
  messages depend on, reasons and allowances), with a private deep copy of that prefix. A
  request whose list starts with an equal prefix resumes after it: one equality test of the
  prefix, in C, instead of re-reading every message. An in-place change anywhere in the
  prefix makes the test fail and the list is counted afresh (text counts still hit). Bounded
  by entries and by the characters the copies reference (strings are shared, not copied).
* **Sections** (``count_once``): the tokens of a body's tool definitions and response
  format, keyed by their ``marshal`` serialisation (exact: types and key order included).

A prefix whose counting added a reason or an allowance (content the estimator does not know,
remote images...) is compared strictly, as its ``marshal`` serialisation (key order and
types change such reasons); any other prefix compares with ``==``, and a message that equals
its copy counts the same (its count depends on its strings, their keys and its containers).
Values that are not plain data (a ``Mapping`` that is not a dict, an object) are not copied:
their prefix is not remembered. Nothing here changes a count: ``tests/test_estimate_cache.py``
compares every cached count with one made without any memory.
"""

from __future__ import annotations

import itertools
import marshal
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from budgetguard._estimate._result import Tally

if TYPE_CHECKING:
    from budgetguard._estimate._models import Profile

T = TypeVar("T")

__all__ = [
    "MAX_HISTORIES",
    "MAX_HISTORY_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TEXT_ENTRIES",
    "MIN_HISTORY",
    "Progress",
    "cache_info",
    "clear_caches",
    "count_history",
    "count_once",
    "text_counter",
]

#: Texts remembered per encoding, and the characters they may hold in all (about 4 MB of
#: ASCII). A text longer than a quarter of that is counted every time instead.
MAX_TEXT_ENTRIES = 16_384
MAX_TEXT_CHARS = 4_000_000
#: Conversations remembered, and the characters of message text their copies may reference.
MAX_HISTORIES = 256
MAX_HISTORY_CHARS = 8_000_000
#: Shorter lists are counted directly: remembering them would cost more than it saves.
MIN_HISTORY = 6
#: Tool and format sections remembered, and the bytes their keys may hold in all.
MAX_SECTIONS = 1_024
MAX_SECTION_BYTES = 4_000_000


class _TextCounts:
    """Token counts of texts in one encoding, keyed by the text (bounded, oldest dropped first)."""

    __slots__ = ("__weakref__", "chars", "count", "counts", "encode", "lock", "max_chars", "max_entries")

    def __init__(self, encode: Callable[[str], Any], max_entries: int, max_chars: int) -> None:
        self.encode = encode
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.counts: dict[str, int] = {}
        self.chars = 0
        self.lock = threading.Lock()
        get = self.counts.get
        add = self._add

        def count(text: str) -> int:
            tokens = get(text)
            return add(text) if tokens is None else tokens

        #: The counting function a profile calls (a closure: attribute lookups cost per call).
        self.count = count

    def _add(self, text: str) -> int:
        tokens = len(self.encode(text)) if text else 0
        size = len(text)
        if size * 4 > self.max_chars:
            return tokens
        with self.lock:
            counts = self.counts
            if text not in counts:
                counts[text] = tokens
                self.chars += size
                if len(counts) > self.max_entries or self.chars > self.max_chars:
                    self._evict()
        return tokens

    def _evict(self) -> None:
        # Oldest first (dicts keep insertion order), a quarter at a time so eviction is amortised.
        counts = self.counts
        drop = max(len(counts) // 4, 1)
        while True:
            for text in list(itertools.islice(counts, drop)):
                del counts[text]
                self.chars -= len(text)
            if len(counts) <= self.max_entries and self.chars <= self.max_chars:
                return


_texts: dict[str, _TextCounts] = {}
# Every one still in use (a caller may keep a counter after another replaced it here).
_all_texts: weakref.WeakSet[_TextCounts] = weakref.WeakSet()
_texts_lock = threading.Lock()


def text_counter(encoding_name: str, encode: Callable[[str], Any]) -> Callable[[str], int]:
    """The cached ``len(encode(text))`` for an encoding, shared by every model that uses it."""
    with _texts_lock:
        counts = _texts.get(encoding_name)
        if counts is None or counts.encode != encode:
            counts = _texts[encoding_name] = _TextCounts(encode, MAX_TEXT_ENTRIES, MAX_TEXT_CHARS)
            _all_texts.add(counts)
        return counts.count


# --- histories ------------------------------------------------------------------------------


class Progress:
    """Where the counting of a list of messages stands; the counters update it as they go."""

    __slots__ = ("host", "names", "tail", "tokens")

    def __init__(self, tokens: int, host: str | None, names: dict[str, str], tail: str | None) -> None:
        self.tokens = tokens
        #: Chat: the first system text, which tool and format sections extend.
        self.host = host
        #: Tool call id -> function name, for the results that follow.
        self.names = names
        #: Responses: the type of a trailing call item (the next one of that type joins its batch).
        self.tail = tail


#: Counts ``items[start:]`` from ``progress`` into a tally.
Counter = Callable[[list[Any], int, Progress, "Profile", Tally], None]


class _Entry:
    """A counted prefix: its copy, and everything counting it added up to."""

    __slots__ = (
        "allowance",
        "audio",
        "chars",
        "counted",
        "exact",
        "host",
        "image_tokens",
        "names",
        "profile",
        "reasons",
        "snapshot",
        "tail",
        "tokens",
    )

    def __init__(
        self,
        profile: Profile,
        snapshot: list[Any],
        chars: int,
        progress: Progress,
        tokens: int,
        reasons: tuple[str, ...],
        exact: bool,
        allowance: int,
        image_tokens: int,
        audio: bool,
    ) -> None:
        self.profile = profile  # held, so the id in the key cannot be reused while this lives
        self.snapshot = snapshot
        self.chars = chars
        #: The prefix's tokens as the counter sums them (framing and text)...
        self.counted = progress.tokens
        #: ... and what it added to the tally directly (images, files, built-in tools).
        self.tokens = tokens
        self.host = progress.host
        self.names = progress.names
        self.tail = progress.tail
        self.reasons = reasons
        self.exact = exact
        self.allowance = allowance
        self.image_tokens = image_tokens
        self.audio = audio


class _Unfreezable(Exception):
    """A value that is not plain JSON data (or a subclass of it): its prefix is not remembered."""


class _Strict:
    """Equals a value only when both serialise to the same bytes: same types and key order too."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __eq__(self, other: object) -> bool:
        try:
            return marshal.dumps(cast(Any, other), 2) == self.blob
        except ValueError:  # not plain data (a subclass, an object): never equal
            return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _strict(value: Any) -> tuple[_Strict, int]:
    try:
        # version 2: no back-references, so equal data always serialises to equal bytes
        blob = marshal.dumps(value, 2)
    except ValueError:
        raise _Unfreezable from None
    return _Strict(blob), len(blob)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any, size: list[int]) -> Any:
    """A private copy of JSON data, equal to ``value`` until it changes (strings shared, so a
    comparison of unchanged text is an identity check); adds the text's length to ``size``."""
    kind = type(value)
    if kind is dict:
        out = value.copy()
        for key, item in out.items():
            if type(item) is str:
                size[0] += len(item)
            elif item is not None:
                out[key] = _copy(item, size)  # replacing a value while iterating is allowed
        return out
    if kind is list or kind is tuple:
        items = [_copy(item, size) if type(item) is not str else item for item in value]
        size[0] += sum(len(item) for item in value if type(item) is str)
        return items if kind is list else tuple(items)
    if kind is str:
        size[0] += len(value)
        return value
    if kind in _SCALARS:
        return value
    raise _Unfreezable


_histories: dict[tuple[int, str, object], list[_Entry]] = {}
_history_chars = 0
_history_count = 0
_history_lock = threading.Lock()
# Candidates kept per key: conversations that open with the same message share a key.
_PER_KEY = 8


def _key(profile: Profile, kind: str, items: list[Any]) -> tuple[int, str, object]:
    first = items[0]
    text = first.get("content") if type(first) is dict else None
    return id(profile), kind, text if type(text) is str else None


def _find(key: tuple[int, str, object], items: list[Any], profile: Profile) -> _Entry | None:
    candidates = _histories.get(key)
    if not candidates:
        return None
    size = len(items)
    for entry in tuple(candidates):
        n = len(entry.snapshot)
        if n > size or entry.profile is not profile:
            continue
        if (items == entry.snapshot) if n == size else (items[:n] == entry.snapshot):
            tail = entry.tail
            if tail is not None and n < size:
                after = items[n]
                if isinstance(after, Mapping) and after.get("type") == tail:
                    continue  # the next item would have joined the prefix's last batch
            return entry
    return None


def count_history(kind: str, items: list[Any], profile: Profile, tally: Tally, counter: Counter) -> Progress:
    """Count ``items`` with ``counter``, resuming after the longest remembered equal prefix.

    ``kind`` names the list (``chat.messages``, ``responses.input``...): lists of different
    kinds never share a prefix. Adds to ``tally`` exactly what counting the whole list would.
    """
    key = _key(profile, kind, items)
    entry = _find(key, items, profile)
    part = Tally()  # what the new items add, kept apart so it is known which were clean
    if entry is None:
        start = 0
        progress = Progress(0, None, {}, None)
    else:
        start = len(entry.snapshot)
        progress = Progress(entry.counted, entry.host, dict(entry.names), entry.tail)
        _replay(entry, tally)
    if start < len(items):
        counter(items, start, progress, profile, part)
        _replay(part, tally)
    if start < len(items):
        _remember(key, entry, items, start, progress, profile, part)
    return progress


def _replay(effects: _Entry | _Once | Tally, tally: Tally) -> None:
    """Add to ``tally`` what counting some part of a body added to a tally of its own."""
    for reason in effects.reasons:
        tally.note(reason)
    if not effects.exact:
        tally.exact = False
    tally.tokens += effects.tokens
    tally.allowance += effects.allowance
    tally.image_tokens += effects.image_tokens
    if effects.audio:
        tally.audio = True


def _remember(
    key: tuple[int, str, object],
    entry: _Entry | None,
    items: list[Any],
    start: int,
    progress: Progress,
    profile: Profile,
    part: Tally,
) -> None:
    global _history_chars, _history_count
    strict = bool(part.reasons) or not part.exact or part.allowance != 0
    copies: list[Any] = []
    size = [0]
    try:
        if strict:  # counting these added reasons, which key order and types can change
            for item in items[start:]:
                copy, blob_size = _strict(item)
                copies.append(copy)
                size[0] += blob_size
        else:
            copies = [_copy(item, size) for item in items[start:]]
    except _Unfreezable:
        return
    chars = size[0]
    if entry is None:
        snapshot, reasons, exact = copies, tuple(part.reasons), part.exact
        tokens, allowance, images, audio = part.tokens, part.allowance, part.image_tokens, part.audio
    else:
        snapshot = entry.snapshot + copies
        chars += entry.chars
        reasons = tuple(dict.fromkeys((*entry.reasons, *part.reasons)))
        exact = entry.exact and part.exact
        tokens = entry.tokens + part.tokens
        allowance = entry.allowance + part.allowance
        images = entry.image_tokens + part.image_tokens
        audio = entry.audio or part.audio
    if chars > MAX_HISTORY_CHARS // 2:
        return
    names = progress.names  # the counter's own copy: nothing writes to it any more
    fresh = _Entry(
        profile,
        snapshot,
        chars,
        Progress(progress.tokens, progress.host, names, progress.tail),
        tokens,
        reasons,
        exact,
        allowance,
        images,
        audio,
    )
    with _history_lock:
        candidates = _histories.pop(key, None)  # re-inserted last: keys are evicted oldest first
        if candidates is None:
            candidates = []
        elif entry is not None and entry in candidates:
            candidates.remove(entry)  # extended: the longer prefix replaces it
            _history_chars -= entry.chars
            _history_count -= 1
        candidates.insert(0, fresh)
        _histories[key] = candidates
        _history_chars += chars
        _history_count += 1
        if len(candidates) > _PER_KEY:
            dropped = candidates.pop()
            _history_chars -= dropped.chars
            _history_count -= 1
        if _history_count > MAX_HISTORIES or _history_chars > MAX_HISTORY_CHARS:
            _evict_histories()


def _evict_histories() -> None:
    # Oldest keys first, a quarter of the entries at a time.
    global _history_chars, _history_count
    target = _history_count - max(_history_count // 4, 1)
    for key in list(_histories):
        if _history_count <= target and _history_chars <= MAX_HISTORY_CHARS:
            return
        for dropped in _histories.pop(key):
            _history_chars -= dropped.chars
            _history_count -= 1


# --- sections: tool definitions and response formats ----------------------------------------


class _Once:
    __slots__ = ("allowance", "audio", "exact", "image_tokens", "profile", "reasons", "result", "tokens")

    def __init__(self, profile: Profile, result: Any, part: Tally) -> None:
        self.profile = profile
        self.result = result
        self.tokens = part.tokens
        self.image_tokens = part.image_tokens
        self.audio = part.audio
        self.reasons = tuple(part.reasons)
        self.exact = part.exact
        self.allowance = part.allowance


_sections: dict[tuple[int, str, bytes], _Once] = {}
_section_bytes = 0
_section_lock = threading.Lock()


def count_once(kind: str, profile: Profile, value: object, tally: Tally, compute: Callable[[Tally], T]) -> T:
    """``compute(tally)``, remembered for ``value`` (the body fields ``compute`` reads).

    ``value`` is compared strictly, as its ``marshal`` serialisation (types, key order and all:
    a schema renders its properties in order, and ``1`` and ``1.0`` differently); a value that
    is not plain data (a subclass, an object) is computed every time. ``compute`` must add to
    the tally it is given and read nothing else from it.
    """
    try:
        blob = marshal.dumps(cast(Any, value), 2)  # version 2: no back-references, equal data -> equal bytes
    except ValueError:
        return compute(tally)
    key = (id(profile), kind, blob)
    entry = _sections.get(key)
    if entry is None or entry.profile is not profile:
        part = Tally()
        entry = _Once(profile, compute(part), part)
        _remember_once(key, entry)
    _replay(entry, tally)
    return cast(T, entry.result)


def _remember_once(key: tuple[int, str, bytes], entry: _Once) -> None:
    global _section_bytes
    size = len(key[2])
    if size * 4 > MAX_SECTION_BYTES:
        return
    with _section_lock:
        if key not in _sections:
            _section_bytes += size
        _sections[key] = entry
        if len(_sections) > MAX_SECTIONS or _section_bytes > MAX_SECTION_BYTES:
            for old in list(itertools.islice(_sections, max(len(_sections) // 4, 1))):
                del _sections[old]
                _section_bytes -= len(old[2])


def clear_caches() -> None:
    """Forget every remembered text count and history (tests, or to free memory)."""
    global _history_chars, _history_count, _section_bytes
    with _texts_lock:
        for counts in list(_all_texts):
            with counts.lock:
                counts.counts.clear()
                counts.chars = 0
    with _history_lock:
        _histories.clear()
        _history_chars = _history_count = 0
    with _section_lock:
        _sections.clear()
        _section_bytes = 0


def cache_info() -> dict[str, int]:
    """Sizes of the caches: texts and their characters, histories and theirs."""
    return {
        "texts": sum(len(c.counts) for c in list(_all_texts)),
        "text_chars": sum(c.chars for c in list(_all_texts)),
        "histories": _history_count,
        "history_chars": _history_chars,
        "sections": len(_sections),
        "section_bytes": _section_bytes,
    }
