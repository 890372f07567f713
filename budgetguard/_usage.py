"""The normalised ``Usage`` value: tokens by kind, request count and exact cost.

Every API shape (Chat Completions, Responses, embeddings, legacy completions, and the
OpenAI-compatible servers that omit fields) is folded into this one value, so nothing above
this module needs to know which endpoint a number came from.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, NamedTuple

from budgetguard._money import add as add_money
from budgetguard._money import to_usd

__all__ = ["TokenCounts", "Usage", "UsageFormatError", "UsageTotal", "format_usd"]

_ZERO = Decimal(0)


class UsageFormatError(ValueError):
    """A usage object from the API had a field of the wrong type or sign."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by kind, successful requests and cost. Adding two usages is exact.

    ``prompt_tokens`` and ``completion_tokens`` are totals as billed; the other token
    fields are parts of those totals (cached and cache-write tokens are part of the prompt,
    reasoning tokens part of the completion), kept apart because they are priced apart.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    #: The part of ``cache_write_tokens`` cached for an hour (Anthropic bills it apart).
    cache_write_1h_tokens: int = 0
    #: Web searches run by a server-side tool (billed per search, not per token).
    web_search_requests: int = 0
    #: File searches run by a server-side tool (billed per call).
    file_search_requests: int = 0
    requests: int = 0
    cost_usd: Decimal = _ZERO
    #: Number of requests whose usage had to be estimated (server reported none, stream cut).
    estimated_requests: int = 0
    #: Requests to models without a price: their tokens are counted, their cost is not in
    #: ``cost_usd`` (only budgets without a dollar cap let them through).
    unpriced_requests: int = 0
    #: The models of those requests.
    unpriced_models: frozenset[str] = frozenset()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def total_cost(self) -> Decimal:
        """Alias of ``cost_usd``, the name LangChain's callback uses."""
        return self.cost_usd

    @property
    def successful_requests(self) -> int:
        """Alias of ``requests``, the name LangChain's callback uses."""
        return self.requests

    # Spelled out rather than looping over fields(): these run on every API call.
    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.input_audio_tokens + other.input_audio_tokens,
            self.output_audio_tokens + other.output_audio_tokens,
            self.input_image_tokens + other.input_image_tokens,
            self.output_image_tokens + other.output_image_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.web_search_requests + other.web_search_requests,
            self.file_search_requests + other.file_search_requests,
            self.requests + other.requests,
            self.cost_usd + other.cost_usd,
            self.estimated_requests + other.estimated_requests,
            self.unpriced_requests + other.unpriced_requests,
            self.unpriced_models | other.unpriced_models if other.unpriced_models else self.unpriced_models,
        )

    def __sub__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            self.cached_tokens - other.cached_tokens,
            self.cache_write_tokens - other.cache_write_tokens,
            self.reasoning_tokens - other.reasoning_tokens,
            self.input_audio_tokens - other.input_audio_tokens,
            self.output_audio_tokens - other.output_audio_tokens,
            self.input_image_tokens - other.input_image_tokens,
            self.output_image_tokens - other.output_image_tokens,
            self.cache_write_1h_tokens - other.cache_write_1h_tokens,
            self.web_search_requests - other.web_search_requests,
            self.file_search_requests - other.file_search_requests,
            self.requests - other.requests,
            self.cost_usd - other.cost_usd,
            self.estimated_requests - other.estimated_requests,
            self.unpriced_requests - other.unpriced_requests,
            # Models are not counted: a difference keeps the models of the larger usage.
            self.unpriced_models if self.unpriced_requests > other.unpriced_requests else frozenset(),
        )

    def __radd__(self, other: object) -> Usage:
        # Lets sum(usages) work with its default start of 0.
        if other == 0:
            return self
        return self.__add__(other)

    def with_cost(self, cost_usd: Decimal) -> Usage:
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.input_audio_tokens,
            self.output_audio_tokens,
            self.input_image_tokens,
            self.output_image_tokens,
            self.cache_write_1h_tokens,
            self.web_search_requests,
            self.file_search_requests,
            self.requests,
            cost_usd,
            self.estimated_requests,
            self.unpriced_requests,
            self.unpriced_models,
        )

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(Usage))

    def __str__(self) -> str:
        # The first five lines match LangChain's get_openai_callback() output exactly,
        # cost formatted the way it formats a float, so existing log parsers keep working.
        lines = [f"Tokens Used: {self.total_tokens}", f"\tPrompt Tokens: {self.prompt_tokens}"]
        if self.cached_tokens:
            lines.append(f"\t\tPrompt Tokens Cached: {self.cached_tokens}")
        lines.append(f"\tCompletion Tokens: {self.completion_tokens}")
        if self.reasoning_tokens:
            lines.append(f"\t\tReasoning Tokens: {self.reasoning_tokens}")
        lines.append(f"Successful Requests: {self.requests}")
        lines.append(f"Total Cost (USD): ${format_usd(self.cost_usd)}")
        if self.unpriced_requests:
            lines.append(
                f"Unpriced Requests: {self.unpriced_requests} "
                f"(no price for {', '.join(sorted(self.unpriced_models))}; not in the cost above)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; cost as a string so no precision is lost."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(Usage)}
        out["total_tokens"] = self.total_tokens
        out["cost_usd"] = str(self.cost_usd)
        out["unpriced_models"] = sorted(self.unpriced_models)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "cost_usd":
                kwargs[f.name] = Decimal(str(value))
            elif f.name == "unpriced_models":
                kwargs[f.name] = frozenset(str(model) for model in value)
            else:
                kwargs[f.name] = int(value)
        return cls(**kwargs)

    @classmethod
    def from_openai(cls, raw: Mapping[str, Any]) -> Usage:
        """Normalise a usage object as the API reports it (one request, cost not yet known).

        Understands Chat Completions (``prompt_tokens``/``completion_tokens`` with their
        ``*_details``), Responses (``input_tokens``/``output_tokens``), embeddings and legacy
        completions. Missing fields count as 0; a field of the wrong type or sign raises
        :class:`UsageFormatError` naming it.
        """
        return cls(*TokenCounts.from_openai(raw), 1)

    @classmethod
    def of_request(cls, counts: TokenCounts, cost_usd: Decimal, estimated: bool = False) -> Usage:
        """One request's usage: its token counts and what they cost."""
        return cls(*counts, 1, cost_usd, int(estimated))  # TokenCounts lists the token fields in order

    @classmethod
    def of_unpriced_request(cls, counts: TokenCounts, model: str, estimated: bool = False) -> Usage:
        """One request to a model without a price: counted, its cost unknown."""
        return cls(*counts, 1, _ZERO, int(estimated), 1, frozenset((model,)))


class UsageTotal:
    """A running sum of one model's calls: what a scope keeps per model.

    Every call adds to each scope it ran in, so adding stays in integers: the token counts as a
    tuple, the cost as exact integer units (``budgetguard._money``). :meth:`value` builds the
    ``Usage`` (and its ``Decimal`` cost) when someone reads it. Not thread-safe: the owner holds
    a lock.
    """

    __slots__ = ("cost_exponent", "cost_units", "estimated_requests", "requests", "tokens", "unpriced_models")

    def __init__(self) -> None:
        self.tokens: tuple[int, ...] = _NO_TOKENS
        self.requests = self.estimated_requests = 0
        self.cost_units = self.cost_exponent = 0
        self.unpriced_models: dict[str, int] = {}  # model -> requests counted without a price

    def add_request(
        self, counts: TokenCounts, units: int, exponent: int, estimated: bool, unpriced_model: str | None
    ) -> None:
        """One request: its token counts and its cost (``units * 10**exponent`` dollars), or
        ``unpriced_model`` when its model has no price."""
        self.tokens = tuple(map(operator.add, self.tokens, counts))
        self.requests += 1
        if estimated:
            self.estimated_requests += 1
        if units:
            total = add_money(self.cost_units, self.cost_exponent, units, exponent)
            self.cost_units, self.cost_exponent = total
        if unpriced_model is not None:
            self.unpriced_models[unpriced_model] = self.unpriced_models.get(unpriced_model, 0) + 1

    def value(self) -> Usage:
        return Usage(
            *TokenCounts._make(self.tokens),
            self.requests,
            to_usd(self.cost_units, self.cost_exponent),
            self.estimated_requests,
            sum(self.unpriced_models.values()),
            frozenset(self.unpriced_models),
        )


class TokenCounts(NamedTuple):
    """The token fields of one request's :class:`Usage`, before it is priced.

    The call path parses a response's usage into these, prices them, then builds the ``Usage``
    once (``Usage.of_request``) rather than building it twice, without and with its cost.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_search_requests: int = 0
    file_search_requests: int = 0

    @classmethod
    def from_openai(cls, raw: Mapping[str, Any]) -> TokenCounts:
        """The counts of a usage object as the API reports it; see :meth:`Usage.from_openai`."""
        if type(raw) is dict and raw.keys() <= _CHAT_USAGE_KEYS:
            # Every chat completion reports this shape: read inline, checked at once; any other
            # value or spelling goes the general way below, which names what is wrong.
            prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
            pdet, cdet = raw.get("prompt_tokens_details"), raw.get("completion_tokens_details")
            if (
                type(pdet) is dict
                and type(cdet) is dict
                and pdet.keys() <= _PROMPT_DETAIL_KEYS
                and cdet.keys() <= _COMPLETION_DETAIL_KEYS
            ):
                cached, audio_in = pdet.get("cached_tokens", 0), pdet.get("audio_tokens", 0)
                reasoning, audio_out = cdet.get("reasoning_tokens", 0), cdet.get("audio_tokens", 0)
                if (
                    type(prompt) is int
                    and type(completion) is int
                    and type(cached) is int
                    and type(audio_in) is int
                    and type(reasoning) is int
                    and type(audio_out) is int
                    and (prompt | completion | cached | audio_in | reasoning | audio_out) >= 0
                    and cached <= prompt
                ):
                    return cls(prompt, completion, cached, 0, reasoning, audio_in, audio_out)
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise UsageFormatError(f"usage must be an object, got {type(raw).__name__}")
        prompt = _first_int(raw, "prompt_tokens", "input_tokens")
        completion = _first_int(raw, "completion_tokens", "output_tokens")
        if prompt is None and completion is None:
            total = _int_field(raw, "total_tokens")
            if total is None:
                raise UsageFormatError("usage has none of prompt_tokens, input_tokens, total_tokens")
            prompt = total
        prompt = prompt or 0
        completion = completion or 0
        pdet = _details(raw, "prompt_tokens_details", "input_tokens_details")
        cdet = _details(raw, "completion_tokens_details", "output_tokens_details")
        cached = cache_write = input_audio = input_image = 0
        if pdet:
            cached = _int_field(pdet, "cached_tokens") or 0
            cache_write = _first_int(pdet, "cache_write_tokens", "cache_creation_tokens") or 0
            input_audio = _int_field(pdet, "audio_tokens") or 0
            input_image = _int_field(pdet, "image_tokens") or 0
        reasoning = output_audio = output_image = 0
        if cdet:
            reasoning = _int_field(cdet, "reasoning_tokens") or 0
            output_audio = _int_field(cdet, "audio_tokens") or 0
            output_image = _int_field(cdet, "image_tokens") or 0
        # Other servers' spellings (DeepSeek, Anthropic-compatible proxies).
        if not cached:
            cached = _int_field(raw, "prompt_cache_hit_tokens") or 0
        if not cache_write:
            cache_write = _first_int(raw, "cache_creation_input_tokens", "cache_write_tokens") or 0
        if cached + cache_write > prompt:
            raise UsageFormatError(
                f"usage reports {cached} cached + {cache_write} cache-write "
                f"tokens, more than its {prompt} prompt tokens"
            )
        return cls(
            prompt,
            completion,
            cached,
            cache_write,
            reasoning,
            input_audio,
            output_audio,
            input_image,
            output_image,
        )

    @classmethod
    def from_anthropic(cls, raw: Mapping[str, Any]) -> TokenCounts:
        """The counts of an Anthropic Messages ``usage`` object.

        Anthropic's ``input_tokens`` excludes cached and cache-write tokens: the prompt is the
        three together. Thinking tokens are part of ``output_tokens`` (billed as output).
        """
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise UsageFormatError(f"usage must be an object, got {type(raw).__name__}")
        fresh = _int_field(raw, "input_tokens")
        output = _int_field(raw, "output_tokens")
        if fresh is None and output is None:
            raise UsageFormatError("usage has neither input_tokens nor output_tokens")
        cache_write = _int_field(raw, "cache_creation_input_tokens") or 0
        cache_read = _int_field(raw, "cache_read_input_tokens") or 0
        split = _details(raw, "cache_creation", "cache_creation")
        one_hour = (_int_field(split, "ephemeral_1h_input_tokens") or 0) if split else 0
        if one_hour > cache_write:
            raise UsageFormatError(
                f"usage reports {one_hour} one-hour cache-write tokens of {cache_write} cache-write tokens"
            )
        tools = _details(raw, "server_tool_use", "server_tool_use")
        searches = (_int_field(tools, "web_search_requests") or 0) if tools else 0
        prompt = (fresh or 0) + cache_write + cache_read
        return cls(
            prompt,
            output or 0,
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=one_hour,
            web_search_requests=searches,
        )


_NO_TOKENS: tuple[int, ...] = tuple(TokenCounts())


# The usage of a chat completion, as OpenAI reports it (``TokenCounts.from_openai``'s fast path).
_CHAT_USAGE_KEYS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }
)
_PROMPT_DETAIL_KEYS = frozenset({"cached_tokens", "audio_tokens"})
_COMPLETION_DETAIL_KEYS = frozenset(
    {"reasoning_tokens", "audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens"}
)


def format_usd(amount: Decimal) -> str:
    """Dollars as LangChain prints them (``7.2e-05``, ``0.0015``, ``0.0``)."""
    return repr(float(amount))


def _details(raw: Mapping[str, Any], name: str, other_name: str) -> Mapping[str, Any]:
    value = raw.get(name)
    if value is None:
        name = other_name
        value = raw.get(name)
        if value is None:
            return {}
    if type(value) is not dict and not isinstance(value, Mapping):  # dict first: the usual case
        raise UsageFormatError(f"usage.{name} must be an object, got {type(value).__name__}")
    return value


# The readers below run a dozen times per API call: two fixed spellings rather than *names
# (no tuple per call); a plain non-negative int (or absent) is accepted inline, anything else
# goes through _checked_count for its conversion or error.
def _int_field(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None or (type(value) is int and value >= 0):
        return value
    return _checked_count(name, value)


def _first_int(raw: Mapping[str, Any], name: str, other_name: str) -> int | None:
    """The first of two spellings of a count that is present."""
    value = raw.get(name)
    if value is None:
        name = other_name
        value = raw.get(name)
        if value is None:
            return None
    return value if type(value) is int and value >= 0 else _checked_count(name, value)


def _checked_count(name: str, value: object) -> int:
    """A token count that is not a plain non-negative int: a whole float, or an error naming it."""
    # bool is an int subclass; a server sending true for a count is broken, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageFormatError(f"usage field {name!r} must be a number, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise UsageFormatError(f"usage field {name!r} must be a whole number, got {value!r}")
        value = int(value)
    if value < 0:
        raise UsageFormatError(f"usage field {name!r} must not be negative, got {value!r}")
    return value
