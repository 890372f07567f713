"""Pre-flight estimates with prices: what a request will cost at least and at most.

``budgetguard._estimate`` counts tokens; this module adds the output cap a request without
one is assumed to use, and prices both ends. The enforcement path and the public
``estimate_request`` use the same code, so what a user sees is what gets reserved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from budgetguard._context import unmetered
from budgetguard._settings import current_settings

if TYPE_CHECKING:
    from budgetguard._estimate import TokenEstimate
    from budgetguard._pricing import PriceBook

__all__ = [
    "Estimate",
    "Plan",
    "assumed_output_tokens",
    "counted_tokens",
    "estimate_request",
    "input_token_counter",
    "may_hide_output",
    "plan_request",
    "server_counter",
]

# Largest output each family can produce (tokens). A request without an output cap is
# reserved at this worst case unless ``assume_output_tokens`` says otherwise. Most specific
# prefix first; from OpenAI's model pages.
_MAX_OUTPUT: tuple[tuple[str, int], ...] = (
    ("gpt-5", 128_000),
    ("gpt-4.1", 32_768),
    ("gpt-4o-mini", 16_384),
    ("gpt-4o", 16_384),
    ("chatgpt-4o", 16_384),
    ("o1-mini", 65_536),
    ("o1", 100_000),
    ("o3", 100_000),
    ("o4-mini", 100_000),
    ("gpt-4-turbo", 4_096),
    ("gpt-4-32k", 8_192),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo-instruct", 4_096),
    ("gpt-3.5", 4_096),
    ("gpt-35", 4_096),
    ("davinci-002", 16_384),
    ("babbage-002", 16_384),
)
#: Reserved for a model not in the table and no ``assume_output_tokens`` configured.
UNKNOWN_MODEL_MAX_OUTPUT = 16_384


def assumed_output_tokens(model: str, configured: int | None = None) -> int:
    """The output a request without a cap is assumed to produce (its worst case)."""
    if configured is not None:
        return configured
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name[3:]
    for prefix, tokens in _MAX_OUTPUT:
        if name.startswith(prefix):
            return tokens
    return UNKNOWN_MODEL_MAX_OUTPUT


@dataclass(frozen=True, slots=True)
class Estimate:
    """A request's cost before it is sent.

    ``prompt_tokens`` is the best estimate of the billed input; ``prompt_tokens_upper`` adds
    the safety margin and is what budgets reserve. ``max_output_tokens`` is the request's own
    cap (``None`` if it has none); ``reserved_output_tokens`` is what is reserved for output
    (the cap, or the model's assumed maximum). ``min_usd``/``max_usd`` price the two ends.
    ``exact`` is False where the body hides context (previous responses, files, built-in
    tools, audio, unknown models); ``reasons`` says why.
    """

    endpoint: str
    model: str
    prompt_tokens: int
    prompt_tokens_upper: int
    max_output_tokens: int | None
    reserved_output_tokens: int
    min_usd: Decimal
    max_usd: Decimal
    exact: bool
    reasons: tuple[str, ...]
    price_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_upper": self.prompt_tokens_upper,
            "max_output_tokens": self.max_output_tokens,
            "reserved_output_tokens": self.reserved_output_tokens,
            "min_usd": str(self.min_usd),
            "max_usd": str(self.max_usd),
            "exact": self.exact,
            "reasons": list(self.reasons),
            "price_source": self.price_source,
        }


# The body fields the server's input-token counter accepts (a subset of a Responses request).
_COUNT_FIELDS = (
    "conversation",
    "input",
    "instructions",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "text",
    "tool_choice",
    "tools",
    "truncation",
)


def input_token_counter(client: Any, body: Mapping[str, Any]) -> Callable[[], Any] | None:
    """Exact mode: a function asking the server to count a Responses body's input tokens
    (neither metered nor billed), or None when ``client`` has no such endpoint. For an async
    client the function returns an awaitable."""
    count = getattr(getattr(getattr(client, "responses", None), "input_tokens", None), "count", None)
    if not callable(count):
        return None
    arguments = {key: body[key] for key in _COUNT_FIELDS if key in body}

    def count_input() -> Any:
        with unmetered():
            return count(**arguments)

    return count_input


def server_counter(endpoint: str, client: Any, body: Mapping[str, Any]) -> Callable[[], Any] | None:
    """Exact mode's counter for a request to ``endpoint`` on ``client``, if it has one (the
    server counts input tokens for free: OpenAI's Responses, Anthropic's Messages)."""
    if client is None:
        return None
    if endpoint == "responses":
        return input_token_counter(client, body)
    if endpoint == "anthropic.messages":
        # Imported when first needed: the estimator loads on the first budgeted call, not with
        # budgetguard.
        from budgetguard._estimate._anthropic import messages_token_counter

        return messages_token_counter(client, body)
    return None


def counted_tokens(result: Any) -> int:
    """The token count in the server's answer to :func:`input_token_counter`."""
    return int(result.input_tokens)


class Plan(NamedTuple):
    """What a reservation needs (the hot path): the token estimate, output and worst case.

    Internal, built on every budgeted call: a named tuple costs a fraction of a frozen dataclass.
    """

    tokens: TokenEstimate
    reserved_output_tokens: int
    #: The worst case in picodollars, rounded up: what budgets reserve.
    max_picos: int
    #: How the worst case was priced; a clamped retry must price the same way.
    service_tier: str | None = None
    audio: bool = False
    images: bool = False


_count_request: Callable[..., TokenEstimate] | None = None


def _counter() -> Callable[..., TokenEstimate]:
    # The estimator is imported on first use (about 25 ms of modules), then kept: a function-level
    # import statement would cost a module lookup on every call.
    global _count_request
    if _count_request is None:
        from budgetguard._estimate import count_request

        _count_request = count_request
    return _count_request


def plan_request(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    assume_output_tokens: int | None = None,
    safety_margin: float | None = None,
    count_input_tokens: Callable[[], Any] | None = None,
    server_prompt_tokens: int | None = None,
    priced: bool = True,
    book: PriceBook | None = None,
) -> Plan:
    """The worst case of a request, as reserved; see :func:`estimate_request`.

    ``priced=False`` plans a request to a model without a price (allowed where no budget caps
    dollars): its tokens are planned, its cost is 0. ``book`` prices it (default: the
    configured one; a call to a regional host passes that host's view).

    ``count_input_tokens`` (exact mode, a sync counter from :func:`input_token_counter`) is
    asked only when the local count is not exact; ``server_prompt_tokens`` is a count already
    obtained (an async caller awaits the counter itself).
    """
    settings = current_settings()
    if safety_margin is None:
        safety_margin = settings.safety_margin
    tokens = _counter()(endpoint, body, safety_margin=safety_margin)
    if server_prompt_tokens is None and not tokens.exact and count_input_tokens is not None:
        server_prompt_tokens = counted_tokens(count_input_tokens())
    if server_prompt_tokens is not None:
        tokens = tokens._replace(
            prompt_tokens=server_prompt_tokens,
            prompt_tokens_upper=server_prompt_tokens,
            exact=True,
            reasons=(*tokens.reasons, f"input tokens counted by the server ({server_prompt_tokens})"),
        )
    if tokens.max_output_tokens is not None:
        reserved_output = tokens.max_output_tokens
    elif endpoint == "embeddings":
        reserved_output = 0
    else:
        per_choice = assumed_output_tokens(
            tokens.model,
            assume_output_tokens if assume_output_tokens is not None else settings.assume_output_tokens,
        )
        reserved_output = per_choice * billed_choices(endpoint, body)
    tier = requested_tier(body)
    audio = tokens.audio or asks_for_audio(body)
    images = tokens.image_tokens > 0
    high = (
        (book or settings.price_book()).max_cost_picos(
            tokens.model,
            tokens.prompt_tokens_upper,
            reserved_output,
            service_tier=tier,
            audio=audio,
            images=images,
        )
        if priced
        else 0
    )
    return Plan(tokens, reserved_output, high, tier, audio, images)


def estimate_request(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    assume_output_tokens: int | None = None,
    safety_margin: float | None = None,
    client: Any = None,
    server_prompt_tokens: int | None = None,
) -> Estimate:
    """Estimate a request body exactly as it would be sent to ``endpoint``.

    ``endpoint`` is ``"chat.completions"``, ``"responses"``, ``"completions"`` or
    ``"embeddings"``. Raises ``EstimateError`` for a malformed body and ``UnknownModelError``
    for a model without a price.

    Exact mode: pass a sync ``client`` (an ``openai.OpenAI``) and a Responses body whose
    local count is not exact (``previous_response_id``, conversations, files, built-in tools)
    is counted by the server's ``responses.input_tokens.count`` instead; that call is neither
    metered nor billed. ``server_prompt_tokens`` passes a count already obtained.
    """
    plan = plan_request(
        endpoint,
        body,
        assume_output_tokens=assume_output_tokens,
        safety_margin=safety_margin,
        count_input_tokens=server_counter(endpoint, client, body),
        server_prompt_tokens=server_prompt_tokens,
    )
    tokens = plan.tokens
    book = current_settings().price_book()
    low, _ = book.cost_bounds(tokens.model, tokens.prompt_tokens, 0, service_tier=plan.service_tier)
    _, high = book.cost_bounds(
        tokens.model,
        tokens.prompt_tokens_upper,
        plan.reserved_output_tokens,
        service_tier=plan.service_tier,
        audio=plan.audio,
        images=plan.images,
    )
    return Estimate(
        endpoint=tokens.endpoint,
        model=tokens.model,
        prompt_tokens=tokens.prompt_tokens,
        prompt_tokens_upper=tokens.prompt_tokens_upper,
        max_output_tokens=tokens.max_output_tokens,
        reserved_output_tokens=plan.reserved_output_tokens,
        min_usd=low,
        max_usd=high,
        exact=tokens.exact,
        reasons=tokens.reasons,
        price_source=book.resolve(tokens.model).source,
    )


def billed_choices(endpoint: str, body: Mapping[str, Any]) -> int:
    """How many completions one request bills: ``n`` (``best_of`` for legacy completions), and
    for legacy completions that many for each of its prompts."""
    counts = [body.get("n"), body.get("best_of") if endpoint == "completions" else None]
    choices = max([c for c in counts if isinstance(c, int) and not isinstance(c, bool) and c > 0] or [1])
    if endpoint == "completions":
        from budgetguard._estimate._legacy import prompt_count

        choices *= prompt_count(body)
    return choices


# Families whose responses bill reasoning tokens that never appear in the output.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "gpt-oss", "codex")


def may_hide_output(model: str, body: Mapping[str, Any]) -> bool:
    """Whether a response may bill output a stream does not show: reasoning models (or a
    request that asks for reasoning), and models budgetguard does not know."""
    if "reasoning" in body or "reasoning_effort" in body:
        return True
    name = model.lower().rsplit("/", 1)[-1].removeprefix("ft:")
    if name.startswith("claude"):
        # Extended thinking bills the full thinking; a stream shows at most a summary of it.
        thinking = body.get("thinking")
        return isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")
    if name.startswith(_REASONING_PREFIXES):
        return not name.startswith("gpt-5-chat")  # the chat variant does not reason
    return not any(name.startswith(prefix) for prefix, _ in _MAX_OUTPUT)


def requested_tier(body: Mapping[str, Any]) -> str | None:
    """The service tier a request asks for (priority costs more; reserve at its price)."""
    tier = body.get("service_tier")
    # "standard_only" is Anthropic's way of asking for the standard tier.
    return tier if isinstance(tier, str) and tier not in ("auto", "default", "standard_only") else None


def asks_for_audio(body: Mapping[str, Any]) -> bool:
    """Whether a request asks for audio output. Audio input is the estimate's to see (its
    ``audio``): it reads every content part anyway, so the body is not walked twice."""
    modalities = body.get("modalities")
    return (isinstance(modalities, list) and "audio" in modalities) or "audio" in body
