"""Pricing: model name -> rates -> exact cost (budgetguard._pricing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings
from decimal import Decimal, localcontext

import pytest

from budgetguard._errors import BudgetGuardWarning, ConfigError, UnknownModelError, UnknownModelWarning
from budgetguard._pricing import (
    PRIORITY_MULTIPLIER,
    ModelRates,
    PriceBook,
    ResolvedPrice,
    default_price_book,
    set_default_price_book,
)
from budgetguard._usage import Usage, format_usd

D = Decimal
M = 1_000_000


def usd(tokens: int, rate_per_m: str) -> Decimal:
    return D(tokens) * D(rate_per_m) / M


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def custom(**overrides: ModelRates) -> PriceBook:
    return PriceBook(overrides=overrides)


SIMPLE = ModelRates(input=D("2"), output=D("8"))


# -- the acceptance case and real rates ----------------------------------------------------------


def test_gpt_35_turbo_instruct_4_prompt_33_completion_costs_exactly_7_2e_05(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=4, completion_tokens=33, requests=1)
    cost = book.cost(usage, "gpt-3.5-turbo-instruct")
    assert cost == D("0.000072")
    assert format_usd(cost) == "7.2e-05"


@pytest.mark.parametrize(
    ("model", "input_rate", "output_rate", "cached_rate"),
    [
        ("gpt-4o", "2.5", "10", "1.25"),
        ("gpt-4o-mini", "0.15", "0.6", "0.075"),
        ("gpt-4.1", "2", "8", "0.5"),
        ("gpt-4.1-mini", "0.4", "1.6", "0.1"),
        ("gpt-4.1-nano", "0.1", "0.4", "0.025"),
        ("gpt-5", "1.25", "10", "0.125"),
        ("gpt-5-mini", "0.25", "2", "0.025"),
        ("gpt-5-nano", "0.05", "0.4", "0.005"),
        ("o3", "2", "8", "0.5"),
        ("o4-mini", "1.1", "4.4", "0.275"),
        ("text-embedding-3-small", "0.02", "0", None),
        ("text-embedding-3-large", "0.13", "0", None),
    ],
)
def test_openai_models_resolve_to_their_published_standard_rates(
    book: PriceBook, model: str, input_rate: str, output_rate: str, cached_rate: str | None
) -> None:
    price = book.resolve(model)
    assert price.canonical == model
    assert price.source.startswith("genai-prices ")
    assert (price.rates.input, price.rates.output) == (D(input_rate), D(output_rate))
    assert price.rates.cached_input == (None if cached_rate is None else D(cached_rate))


def test_resolved_price_source_names_the_genai_prices_version(book: PriceBook) -> None:
    import genai_prices

    assert book.resolve("gpt-4o").source == f"genai-prices {genai_prices.__version__}"


@pytest.mark.parametrize(
    ("model", "usage", "context"),
    [
        ("gpt-4o", Usage(prompt_tokens=1500, completion_tokens=200, cached_tokens=1024), None),
        (
            "gpt-5",
            Usage(prompt_tokens=5000, completion_tokens=900, cached_tokens=2048),
            {"service_tier": "flex"},
        ),
        ("gpt-4.1-mini", Usage(prompt_tokens=300, completion_tokens=20), {"service_tier": "priority"}),
        (
            "o4-mini",
            Usage(prompt_tokens=3000, completion_tokens=4000, cached_tokens=1152),
            {"processing": "batch"},
        ),
        ("gpt-5.4", Usage(prompt_tokens=300_000, completion_tokens=1000, cached_tokens=100_000), None),
        ("gpt-5.4", Usage(prompt_tokens=300_000, completion_tokens=1000), {"service_tier": "flex"}),
        ("ft:gpt-4o-mini-2024-07-18:acme::x1", Usage(prompt_tokens=77, completion_tokens=5), None),
    ],
)
def test_costs_agree_with_genai_prices_own_calculation(
    book: PriceBook, model: str, usage: Usage, context: dict[str, str] | None
) -> None:
    import genai_prices

    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.prompt_tokens,
            cache_read_tokens=usage.cached_tokens,
            output_tokens=usage.completion_tokens,
        ),
        model,
        provider_id="openai",
        price_context=context,
    ).total_price
    tier = (context or {}).get("service_tier")
    batch = (context or {}).get("processing") == "batch"
    assert book.cost(usage, model, service_tier=tier, batch=batch) == expected


# -- parts of the prompt and completion ------------------------------------------------------------


def test_cached_input_tokens_are_billed_at_the_cached_rate(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=2000, completion_tokens=0, cached_tokens=1536)
    assert book.cost(usage, "gpt-4o") == usd(464, "2.5") + usd(1536, "1.25")


def test_cached_tokens_without_a_cached_rate_are_billed_as_input() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=600)
    assert custom(m=SIMPLE).cost(usage, "m") == usd(1000, "2")


def test_cache_write_tokens_are_billed_at_the_cache_write_rate() -> None:
    rates = ModelRates(input=D("5"), output=D("30"), cached_input=D("0.5"), cache_write=D("6.25"))
    usage = Usage(prompt_tokens=10_000, completion_tokens=0, cached_tokens=2000, cache_write_tokens=3000)
    expected = usd(5000, "5") + usd(2000, "0.5") + usd(3000, "6.25")
    assert custom(m=rates).cost(usage, "m") == expected


def test_reasoning_tokens_are_billed_as_output_tokens(book: PriceBook) -> None:
    with_reasoning = Usage(prompt_tokens=100, completion_tokens=1000, reasoning_tokens=800)
    without = Usage(prompt_tokens=100, completion_tokens=1000)
    assert book.cost(with_reasoning, "o3") == book.cost(without, "o3") == usd(100, "2") + usd(1000, "8")


def test_audio_tokens_are_billed_at_their_own_rates_and_the_rest_at_text_rates(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500, input_audio_tokens=700, output_audio_tokens=400)
    expected = usd(300, "2.5") + usd(700, "32") + usd(100, "10") + usd(400, "64")
    assert book.resolve("gpt-audio").rates.input_audio == D("32")
    assert book.cost(usage, "gpt-audio") == expected


def test_image_tokens_are_billed_at_their_own_rates() -> None:
    rates = ModelRates(input=D("5"), output=D("10"), input_image=D("8"), output_image=D("32"))
    usage = Usage(
        prompt_tokens=1000, completion_tokens=5000, input_image_tokens=600, output_image_tokens=4000
    )
    expected = usd(400, "5") + usd(600, "8") + usd(1000, "10") + usd(4000, "32")
    assert custom(img=rates).cost(usage, "img") == expected


def test_overlapping_parts_never_bill_more_tokens_than_the_total() -> None:
    rates = ModelRates(input=D("4"), output=D("16"), cached_input=D("0.4"), input_audio=D("32"))
    # 800 cached tokens that are also audio: cached wins, only the 200 uncached are audio.
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=800, input_audio_tokens=1000)
    assert custom(rt=rates).cost(usage, "rt") == usd(800, "0.4") + usd(200, "32")


def test_a_negative_token_count_is_an_error(book: PriceBook) -> None:
    with pytest.raises(ValueError, match="negative"):
        book.cost(Usage(prompt_tokens=-1), "gpt-4o")


# -- long context ----------------------------------------------------------------------------------

LONG = ModelRates(
    input=D("1"),
    output=D("4"),
    cached_input=D("0.1"),
    long_context_threshold=1000,
    long_context=ModelRates(input=D("2"), output=D("6"), cached_input=D("0.2")),
)


def test_prompts_up_to_the_threshold_pay_base_rates() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=500)
    assert custom(lc=LONG).cost(usage, "lc") == usd(500, "1") + usd(500, "0.1") + usd(100, "4")


def test_prompts_above_the_threshold_pay_long_context_rates_on_every_token() -> None:
    usage = Usage(prompt_tokens=1001, completion_tokens=100, cached_tokens=500)
    assert custom(lc=LONG).cost(usage, "lc") == usd(501, "2") + usd(500, "0.2") + usd(100, "6")


def test_gpt_5_4_has_the_272k_long_context_tier(book: PriceBook) -> None:
    rates = book.resolve("gpt-5.4").rates
    assert rates.long_context_threshold == 272_000
    assert rates.long_context is not None
    assert (rates.long_context.input, rates.long_context.output) == (D("5"), D("22.5"))
    at = Usage(prompt_tokens=272_000, completion_tokens=1000)
    above = Usage(prompt_tokens=272_001, completion_tokens=1000)
    assert book.cost(at, "gpt-5.4") == usd(272_000, "2.5") + usd(1000, "15")
    assert book.cost(above, "gpt-5.4") == usd(272_001, "5") + usd(1000, "22.5")


# -- service tiers and batch -----------------------------------------------------------------------

ONE_M = Usage(prompt_tokens=M, completion_tokens=M)


@pytest.mark.parametrize("tier", [None, "default", "auto", "standard", "DEFAULT"])
def test_default_auto_and_no_service_tier_are_standard_rates(book: PriceBook, tier: str | None) -> None:
    assert book.cost(ONE_M, "gpt-5", service_tier=tier) == D("11.25")


def test_flex_uses_the_published_flex_price_when_genai_prices_has_one(book: PriceBook) -> None:
    assert book.cost(ONE_M, "gpt-5", service_tier="flex") == D("0.625") + D("5")
    assert book.cost(ONE_M, "o3", service_tier="flex") == D("1") + D("4")


def test_priority_uses_the_published_priority_price_when_genai_prices_has_one(book: PriceBook) -> None:
    assert book.cost(ONE_M, "gpt-4o", service_tier="priority") == D("4.25") + D("17")
    assert book.cost(ONE_M, "gpt-5", service_tier="priority") == D("2.5") + D("20")


def test_batch_uses_the_published_batch_price(book: PriceBook) -> None:
    assert book.cost(ONE_M, "gpt-4o-mini", batch=True) == D("0.075") + D("0.3")
    assert book.cost(ONE_M, "gpt-4o-mini", service_tier="priority", batch=True) == D("0.375")


def test_without_published_tier_prices_flex_and_batch_are_half_and_priority_a_multiplier() -> None:
    book = custom(m=SIMPLE)
    assert book.cost(ONE_M, "m") == D("10")
    assert book.cost(ONE_M, "m", service_tier="flex") == D("5")
    assert book.cost(ONE_M, "m", batch=True) == D("5")
    assert book.cost(ONE_M, "m", service_tier="priority") == D("10") * PRIORITY_MULTIPLIER


def test_an_unknown_service_tier_is_priced_standard_with_one_warning(book: PriceBook) -> None:
    book = custom(m=SIMPLE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        costs = {book.cost(ONE_M, "m", service_tier="scale") for _ in range(3)}
    assert costs == {D("10")}
    assert [type(w.message) for w in caught] == [BudgetGuardWarning]
    assert "scale" in str(caught[0].message)


# -- names: snapshots, fine-tunes, prefixes, aliases ------------------------------------------------


def test_a_dated_snapshot_resolves_to_its_model(book: PriceBook) -> None:
    price = book.resolve("gpt-4o-2024-08-06")
    assert (price.model, price.canonical) == ("gpt-4o-2024-08-06", "gpt-4o")
    assert price.rates == book.resolve("gpt-4o").rates


def test_a_snapshot_with_its_own_price_keeps_it(book: PriceBook) -> None:
    price = book.resolve("gpt-4o-2024-05-13")
    assert (price.canonical, price.rates.input, price.rates.output) == ("gpt-4o-2024-05-13", D("5"), D("15"))


def test_a_snapshot_genai_prices_does_not_list_is_priced_as_the_undated_model(book: PriceBook) -> None:
    price = book.resolve("gpt-5-mini-2031-01-01")
    assert price.canonical == "gpt-5-mini"
    assert price.rates == book.resolve("gpt-5-mini").rates
    assert "snapshot" in price.source


def test_a_fine_tune_with_known_fine_tuned_rates_uses_them(book: PriceBook) -> None:
    price = book.resolve("ft:gpt-4o-mini-2024-07-18:my-org::abc123")
    assert (price.rates.input, price.rates.output) == (D("0.3"), D("1.2"))
    assert book.cost(Usage(prompt_tokens=M, completion_tokens=M), price.model) == D("1.5")


def test_a_fine_tune_without_fine_tuned_rates_is_priced_at_its_base_model_with_one_warning() -> None:
    book = PriceBook()
    # OpenAI publishes no fine-tuned rates for gpt-5 (neither genai-prices nor the table has any).
    name = "ft:gpt-5-2025-08-07:my-org:support:abc123"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        price = book.resolve(name)
        book.cost(ONE_M, name)
        book.cost(ONE_M, name)
    assert price.canonical == "gpt-5"
    assert price.rates == book.resolve("gpt-5").rates
    assert "base model" in price.source
    assert [type(w.message) for w in caught] == [UnknownModelWarning]
    assert name in str(caught[0].message)
    assert book.knows(name)


def test_an_override_for_a_fine_tune_name_wins() -> None:
    name = "ft:gpt-4.1-2025-04-14:my-org::abc123"
    book = PriceBook(overrides={name: ModelRates(input=D("3"), output=D("12"))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert book.cost(ONE_M, name) == D("15")


@pytest.mark.parametrize("name", ["openai/gpt-4o", "azure/gpt-4o", "GPT-4o", " gpt-4o "])
def test_provider_prefixes_case_and_spaces_do_not_change_the_price(book: PriceBook, name: str) -> None:
    price = book.resolve(name)
    assert price.model == name
    assert price.canonical == "gpt-4o"


def test_an_azure_deployment_alias_is_priced_as_its_base_model() -> None:
    book = PriceBook(aliases={"prod-chat-eu": "gpt-4o"})
    price = book.resolve("prod-chat-eu")
    assert (price.model, price.canonical) == ("prod-chat-eu", "gpt-4o")
    assert book.cost(ONE_M, "prod-chat-eu") == D("12.5")


def test_aliases_chain_and_may_end_at_an_override() -> None:
    book = PriceBook(
        aliases={"team-default": "prod-chat", "prod-chat": "negotiated-4o"},
        overrides={"negotiated-4o": ModelRates(input=D("2"), output=D("8"))},
    )
    price = book.resolve("team-default")
    assert (price.canonical, price.source) == ("negotiated-4o", "override")
    assert book.cost(ONE_M, "team-default") == D("10")


def test_an_alias_loop_is_a_config_error_naming_the_loop() -> None:
    with pytest.raises(ConfigError, match=r"alias loop: 'a' -> 'b' -> 'c' -> 'a'"):
        PriceBook(aliases={"a": "b", "b": "c", "c": "a"})
    with pytest.raises(ConfigError, match="alias loop"):
        PriceBook(aliases={"self": "self"})


def test_an_override_replaces_genai_prices_rates_for_that_name() -> None:
    book = custom(**{"gpt-4o": ModelRates(input=D("1"), output=D("1"))})
    assert book.resolve("gpt-4o").source == "override"
    assert book.cost(ONE_M, "gpt-4o") == D("2")


# -- discount ----------------------------------------------------------------------------------------


def test_a_negotiated_discount_applies_to_every_price() -> None:
    book = PriceBook(discount=D("0.15"), overrides={"m": SIMPLE})
    assert book.cost(ONE_M, "gpt-4o") == D("12.5") * D("0.85")
    assert book.cost(ONE_M, "m") == D("8.5")
    assert book.cost(ONE_M, "gpt-5", service_tier="flex") == D("5.625") * D("0.85")
    assert book.cost_bounds("m", M, M) == (D("1.7"), D("8.5"))
    assert book.resolve("m").rates == SIMPLE  # resolve() reports list prices


@pytest.mark.parametrize("discount", [D("-0.1"), D("1"), D("1.5"), D("NaN")])
def test_a_discount_outside_0_to_1_is_a_config_error(discount: Decimal) -> None:
    with pytest.raises(ConfigError, match="discount"):
        PriceBook(discount=discount)


# -- unknown models ----------------------------------------------------------------------------------


def test_an_unknown_model_raises_with_its_name_and_close_known_names(book: PriceBook) -> None:
    with pytest.raises(UnknownModelError) as info:
        book.cost(ONE_M, "gpt-4o-mnii")
    assert info.value.model == "gpt-4o-mnii"
    assert "'gpt-4o-mnii'" in str(info.value)
    assert "'gpt-4o-mini'" in str(info.value)


def test_an_unknown_alias_target_names_the_alias_chain() -> None:
    book = PriceBook(aliases={"my-deployment": "gtp-4o"})
    with pytest.raises(UnknownModelError, match=r"'my-deployment' -> 'gtp-4o'"):
        book.resolve("my-deployment")


def test_a_model_priced_per_audio_hour_is_unknown_for_token_pricing(book: PriceBook) -> None:
    with pytest.raises(UnknownModelError, match="per audio hour"):
        book.resolve("whisper-1")


def test_an_unknown_model_is_never_priced_at_zero(book: PriceBook) -> None:
    for name in ["", "my-local-llm", "gpt-99-ultra"]:
        with pytest.raises(UnknownModelError):
            book.cost(ONE_M, name)
        assert not book.knows(name)


def test_warn_mode_charges_the_fallback_and_warns_once_per_model() -> None:
    fallback = ModelRates(input=D("10"), output=D("30"))
    book = PriceBook(unknown_model="warn", fallback=fallback)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        costs = [book.cost(ONE_M, "my-local-llm") for _ in range(5)]
        book.cost(ONE_M, "other-llm")
        book.cost(ONE_M, "gpt-4o")
    assert costs == [D("40")] * 5
    assert book.resolve("my-local-llm").source == "fallback"
    messages = [str(w.message) for w in caught if issubclass(w.category, UnknownModelWarning)]
    assert len(messages) == 2
    assert "my-local-llm" in messages[0]
    assert "other-llm" in messages[1]
    assert not book.knows("my-local-llm")


def test_the_fallback_warning_is_shown_once_across_threads() -> None:
    book = PriceBook(unknown_model="warn", fallback=SIMPLE)
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(50):
            book.cost(ONE_M, "mystery")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len([w for w in caught if issubclass(w.category, UnknownModelWarning)]) == 1


def test_warn_mode_without_fallback_rates_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fallback"):
        PriceBook(unknown_model="warn")


def test_choose_model_prefers_the_first_known_name() -> None:
    book = PriceBook(unknown_model="warn", fallback=SIMPLE)
    assert book.choose_model("gpt-4o-2024-08-06", "gpt-4o") == "gpt-4o-2024-08-06"
    assert book.choose_model("custom-snapshot-x", "gpt-4o") == "gpt-4o"
    assert book.choose_model(None, "", "nothing-known") == "nothing-known"


# -- exactness -----------------------------------------------------------------------------------------


def test_ten_thousand_tiny_costs_add_up_to_exactly_the_product(book: PriceBook) -> None:
    one = Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=0)
    each = book.cost(one, "gpt-4o-mini")
    assert each == D("0.00000285")
    total = sum((book.cost(one, "gpt-4o-mini") for _ in range(10_000)), D(0))
    assert total == D("0.0285")
    assert total == each * 10_000


def test_costs_do_not_depend_on_the_callers_decimal_context(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=123_457, completion_tokens=98_765, cached_tokens=1_024)
    expected = book.cost(usage, "gpt-5")
    with localcontext() as ctx:
        ctx.prec = 3
        assert book.cost(usage, "gpt-5") == expected
        assert str(book.cost(usage, "gpt-5")) == str(expected)


def test_costs_are_decimals_with_no_exponent_notation(book: PriceBook) -> None:
    assert (
        str(book.cost(Usage(prompt_tokens=4, completion_tokens=33), "gpt-3.5-turbo-instruct")) == "0.000072"
    )
    assert str(book.cost(Usage(prompt_tokens=40 * M), "gpt-4o")) == "100"
    assert book.cost(Usage(), "gpt-4o") == 0


# -- reservations -----------------------------------------------------------------------------------


def test_cost_bounds_max_is_the_full_input_rate_plus_max_output_and_min_is_cached_input_only(
    book: PriceBook,
) -> None:
    low, high = book.cost_bounds("gpt-4o", 10_000, 2_000)
    assert high == usd(10_000, "2.5") + usd(2_000, "10")
    assert low == usd(10_000, "1.25")


def test_cost_bounds_use_the_long_context_tier_above_the_threshold() -> None:
    assert custom(lc=LONG).cost_bounds("lc", 2000, 100) == (usd(2000, "0.2"), usd(2000, "2") + usd(100, "6"))


def test_cost_bounds_max_covers_cache_writes_dearer_than_input() -> None:
    rates = ModelRates(input=D("5"), output=D("30"), cache_write=D("6.25"))
    _, high = custom(m=rates).cost_bounds("m", 1000, 0)
    assert high == usd(1000, "6.25")
    assert high >= custom(m=rates).cost(Usage(prompt_tokens=1000, cache_write_tokens=1000), "m")


def test_cost_bounds_cover_audio_rates_only_when_audio_is_possible(book: PriceBook) -> None:
    _, text_only = book.cost_bounds("gpt-audio", 1000, 1000)
    _, with_audio = book.cost_bounds("gpt-audio", 1000, 1000, audio=True)
    assert text_only == usd(1000, "2.5") + usd(1000, "10")
    assert with_audio == usd(1000, "32") + usd(1000, "64")


def test_cost_bounds_apply_the_service_tier(book: PriceBook) -> None:
    assert book.cost_bounds("gpt-5", M, M, service_tier="flex")[1] == D("5.625")


def test_cost_bounds_of_an_unknown_model_raise(book: PriceBook) -> None:
    with pytest.raises(UnknownModelError):
        book.cost_bounds("gpt-99-ultra", 10, 10)


# -- rates from configuration ---------------------------------------------------------------------------


def test_rates_from_a_yaml_mapping_are_exact_decimals() -> None:
    rates = ModelRates.from_mapping(
        {
            "input": 0.075,
            "output": "0.3",
            "cached_input": 1,
            "long_context_threshold": 272_000,
            "long_context": {"input": 0.15, "output": 0.45},
        },
        where="prices.yaml:3 pricing.models.gpt-x",
    )
    assert rates == ModelRates(
        input=D("0.075"),
        output=D("0.3"),
        cached_input=D("1"),
        long_context_threshold=272_000,
        long_context=ModelRates(input=D("0.15"), output=D("0.45")),
    )


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"input": 1, "output": 2, "cached": 1}, "cached", "did you mean 'cached_input'"),
        ({"output": 2}, "input", "missing"),
        ({"input": -1, "output": 2}, "input", "non-negative"),
        ({"input": True, "output": 2}, "input", "number"),
        ({"input": "cheap", "output": 2}, "input", "number"),
        ({"input": 1, "output": 2, "long_context_threshold": 10}, "long_context", "together"),
        (
            {"input": 1, "output": 2, "long_context_threshold": 0, "long_context": {}},
            "long_context_threshold",
            "positive",
        ),
    ],
)
def test_bad_rate_mappings_are_config_errors_naming_where_and_the_key(
    data: dict[str, object], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ModelRates.from_mapping(data, where="prices.yaml:7 pricing.models.m")
    assert info.value.key == key
    assert "prices.yaml:7 pricing.models.m" in str(info.value)
    assert problem in str(info.value)


def test_a_bad_nested_long_context_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"pricing\.models\.m\.long_context"):
        ModelRates.from_mapping(
            {"input": 1, "output": 2, "long_context_threshold": 5, "long_context": {"input": 1}},
            where="pricing.models.m",
        )


def test_model_rates_refuse_floats() -> None:
    with pytest.raises(ValueError, match="Decimal"):
        ModelRates(input=0.1, output=D("1"))  # type: ignore[arg-type]


# -- the process-wide book ---------------------------------------------------------------------------


def test_the_default_price_book_can_be_replaced() -> None:
    original = default_price_book()
    assert default_price_book() is original
    replacement = custom(m=SIMPLE)
    try:
        set_default_price_book(replacement)
        assert default_price_book() is replacement
    finally:
        set_default_price_book(original)


def test_resolve_returns_a_resolved_price(book: PriceBook) -> None:
    assert isinstance(book.resolve("gpt-4o"), ResolvedPrice)


# -- laziness and no network ----------------------------------------------------------------------


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_pricing_does_not_import_genai_prices_until_first_use() -> None:
    out = _run(
        """
        import sys
        import budgetguard._pricing as pricing
        book = pricing.PriceBook(aliases={"x": "gpt-4o"})
        pricing.default_price_book()
        print("before", "genai_prices" in sys.modules, "tiktoken" in sys.modules)
        book.resolve("x")
        print("after", "genai_prices" in sys.modules)
        """
    )
    assert out.split() == ["before", "False", "False", "after", "True"]


def test_pricing_never_touches_the_network_and_genai_prices_never_updates() -> None:
    out = _run(
        """
        import socket, threading
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network is off in this test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from budgetguard._pricing import default_price_book
        from budgetguard._usage import Usage
        book = default_price_book()
        for model in ["gpt-4o", "gpt-5", "o3", "deepseek-chat", "ft:gpt-4o-mini-2024-07-18:o::x"]:
            book.cost(Usage(prompt_tokens=10, completion_tokens=10), model, service_tier="flex")
        try:
            book.resolve("nope-nothing")
        except LookupError:
            pass

        from genai_prices import update_prices
        updater = update_prices._shared_updater
        print(len(attempts), updater.ref_count, updater.thread is None,
              any(t.name.startswith("genai_prices") for t in threading.enumerate()))
        """
    )
    assert out.split() == ["0", "0", "True", "False"]


def test_a_snapshot_installed_by_genai_prices_auto_update_is_not_used() -> None:
    from genai_prices import data_snapshot

    try:
        # What UpdatePrices does after a fetch: install a new global snapshot (here: no providers).
        data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=[], from_auto_update=True))
        assert PriceBook().cost(ONE_M, "gpt-4o") == D("12.5")
    finally:
        data_snapshot.set_custom_snapshot(None)


def test_a_dated_genai_prices_change_takes_effect_on_its_day_without_a_new_book(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    import budgetguard._pricing as pricing

    clock = [datetime(2025, 6, 9, 23, 0, tzinfo=UTC)]
    monkeypatch.setattr(pricing, "_utc_now", lambda: clock[0])
    monkeypatch.setattr(pricing, "_wall_time", lambda: clock[0].timestamp())
    book = PriceBook()
    # genai-prices records o3 at $10/$40 until OpenAI's cut to $2/$8 on 2025-06-10.
    assert book.cost(ONE_M, "o3") == D("50")
    clock[0] = datetime(2025, 6, 10, 0, 1, tzinfo=UTC)
    assert book.cost(ONE_M, "o3") == D("10")


def test_anthropic_one_hour_cache_writes_and_web_searches_are_priced_at_their_own_rates() -> None:
    book = PriceBook()
    usage = Usage(
        prompt_tokens=10_000 + 3_000 + 20_000,  # below the 200k long-context threshold
        completion_tokens=1_000,
        cached_tokens=20_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=2_000,
        web_search_requests=4,
    )
    # claude-sonnet-4-5 list prices per 1M tokens: input $3, output $15, cache read $0.30,
    # cache write (5 min) $3.75, cache write (1 h) $6; web search $10 per 1,000.
    expected = (
        Decimal(3) * Decimal("0.01")
        + Decimal("15") * Decimal("0.001")
        + Decimal("0.3") * Decimal("0.02")
        + Decimal("3.75") * Decimal("0.001")
        + Decimal(6) * Decimal("0.002")
        + Decimal(10) * 4 / 1000
    )
    assert book.cost(usage, "anthropic/claude-sonnet-4-5") == expected


def test_overrides_price_one_hour_cache_writes_and_web_searches() -> None:
    rates = ModelRates(
        input=Decimal(1), output=Decimal(2), cache_write=Decimal("1.25"), web_search=Decimal(5)
    )
    book = PriceBook(overrides={"m": rates})
    usage = Usage(prompt_tokens=1_000_000, cache_write_tokens=1_000_000, cache_write_1h_tokens=400_000,
                  web_search_requests=1000)  # fmt: skip
    # No cache_write_1h rate: one-hour writes cost what other cache writes cost.
    assert book.cost(usage, "m") == Decimal("1.25") + Decimal(5)


# -- pricing truth: fine-tunes, Azure names, regional hosts, prefixes, aliases (issue 10 item 6) ------

# One call with plain, cached and reasoning tokens: 10,000 prompt tokens of which 4,000 cached, and
# 3,000 completion tokens of which 2,000 reasoning (billed as output).
MIXED = Usage(prompt_tokens=10_000, completion_tokens=3_000, cached_tokens=4_000, reasoning_tokens=2_000)


def published(input_rate: str, cached_rate: str | None, output_rate: str, *, uplift: str = "1") -> Decimal:
    """MIXED's cost at published rates (USD per 1M tokens); no cached rate: cached tokens at input."""
    cached = cached_rate if cached_rate is not None else input_rate
    base = usd(6_000, input_rate) + usd(4_000, cached) + usd(3_000, output_rate)
    return base * D(uplift)


# Published prices, typed in from OpenAI's pages, not read from budgetguard's table:
# fine-tuned inference (https://developers.openai.com/api/docs/pricing, Fine-tuning, Standard);
# legacy gpt-3.5 snapshots (same page, Legacy models); data residency +10% for models released on
# or after 2026-03-05 (https://developers.openai.com/api/docs/guides/data-residency).
PRICING_CLASSES = [
    # OpenAI fine-tunes: their own rates, with their own cached-input rate.
    ("ft:gpt-4.1-2025-04-14:acme:support:a1b2", None, published("3.00", "0.75", "12.00")),
    ("ft:gpt-4.1-mini-2025-04-14:acme::a1b2", None, published("0.80", "0.20", "3.20")),
    ("ft:gpt-4.1-nano-2025-04-14:acme::a1b2", None, published("0.20", "0.05", "0.80")),
    ("ft:o4-mini-2025-04-16:acme::a1b2", None, published("4.00", "1.00", "16.00")),
    ("ft:gpt-4o-2024-08-06:acme::a1b2", None, published("3.75", "1.875", "15.00")),
    ("ft:gpt-4o-mini-2024-07-18:acme::a1b2", None, published("0.30", "0.15", "1.20")),
    ("ft:gpt-4o-mini-2024-07-18:acme:name:a1b2:ckpt-step-88", None, published("0.30", "0.15", "1.20")),
    ("ft:gpt-3.5-turbo-0125:acme::a1b2", None, published("3.00", None, "6.00")),
    ("ft:davinci-002:acme::a1b2", None, published("12.00", None, "12.00")),
    ("ft:babbage-002:acme::a1b2", None, published("1.60", None, "1.60")),
    # Azure fine-tune deployments' model names: <base>.ft-<id>.
    ("gpt-4o-mini-2024-07-18.ft-0e208cf33a6a466994aff31a08aba678", None, published("0.30", "0.15", "1.20")),
    ("gpt-4.1-2025-04-14.ft-5b2c1f9e8a7d4c3b9e1f", None, published("3.00", "0.75", "12.00")),
    ("gpt-35-turbo-0125.ft-9f8e7d6c5b4a", None, published("3.00", None, "6.00")),
    # Azure's spellings of OpenAI's names.
    ("gpt-35-turbo-0613", None, published("1.50", None, "2.00")),
    ("gpt-35-turbo-16k", None, published("3.00", None, "4.00")),
    ("gpt-35-turbo-1106", None, published("1.00", None, "2.00")),
    # Data residency: x1.1 on the regional hosts for models released on or after 2026-03-05 only.
    ("gpt-5.4", "https://eu.api.openai.com/v1", published("2.50", "0.25", "15.00", uplift="1.1")),
    ("gpt-5.4-mini", "https://us.api.openai.com/v1/", published("0.75", "0.075", "4.50", uplift="1.1")),
    ("gpt-5.4-2026-03-05", "https://eu.api.openai.com/v1", published("2.50", "0.25", "15.00", uplift="1.1")),
    ("gpt-5.5", "https://eu.api.openai.com/v1", published("5.00", "0.50", "30.00", uplift="1.1")),
    ("gpt-5.4", "https://api.openai.com/v1", published("2.50", "0.25", "15.00")),
    ("gpt-4o", "https://eu.api.openai.com/v1", published("2.50", "1.25", "10.00")),
    ("gpt-4.1-mini", "https://us.api.openai.com/v1", published("0.40", "0.10", "1.60")),
    ("ft:gpt-4.1-2025-04-14:acme::a1b2", "https://eu.api.openai.com/v1", published("3.00", "0.75", "12.00")),
    # Provider-prefixed names: the model they name.
    ("openrouter/openai/gpt-4o", None, published("2.50", "1.25", "10.00")),
    ("azure/eastus/gpt-4o", None, published("2.50", "1.25", "10.00")),
    ("azure/swedencentral/gpt-4.1-mini", None, published("0.40", "0.10", "1.60")),
    ("openai/gpt-4.1", None, published("2.00", "0.50", "8.00")),
    # OpenAI's -latest aliases: their current target.
    ("gpt-5-chat-latest", None, published("1.25", "0.125", "10.00")),
    ("chatgpt-4o-latest", None, published("5.00", None, "15.00")),
    ("codex-mini-latest", None, published("1.50", "0.375", "6.00")),
]


@pytest.mark.parametrize(("model", "base_url", "expected"), PRICING_CLASSES)
def test_every_pricing_class_equals_the_providers_published_price_for_cached_reasoning_and_plain_tokens(
    model: str, base_url: str | None, expected: Decimal
) -> None:
    book = PriceBook().for_base_url(base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a published price, not a guess: no warning
        assert book.cost(MIXED, model) == expected


@pytest.mark.parametrize(
    "model",
    [
        "ft:gpt-99-preview-2031-01-01:acme::a1b2",  # a fine-tune of a base nobody prices
        "mystery-base.ft-0e208cf33a6a",
        "azure/eastus/prod-chat-deployment",  # a deployment name, not a model: needs an alias
        "openrouter/acme/secret-model",
        "gpt-35-nonsense",
        "nothing-known-latest",
    ],
)
def test_where_a_price_cannot_be_known_the_unknown_model_rules_apply(model: str) -> None:
    with pytest.raises(UnknownModelError):
        PriceBook().cost(MIXED, model)
    book = PriceBook(unknown_model="warn", fallback=SIMPLE)
    with pytest.warns(UnknownModelWarning, match="fallback"):
        assert book.cost(MIXED, model) == usd(10_000, "2") + usd(3_000, "8")


def test_fine_tuned_rates_are_well_above_their_base_models_rates(book: PriceBook) -> None:
    for base, ratio in [("gpt-4.1-nano", 2), ("gpt-4.1-mini", 2), ("gpt-4.1", D("1.5")), ("o4-mini", 3)]:
        tuned = book.resolve(f"ft:{base}-2025-04-1{'6' if base == 'o4-mini' else '4'}:acme::x")
        assert tuned.rates.input >= book.resolve(base).rates.input * ratio
        assert tuned.rates.cached_input is not None


def test_fine_tunes_use_the_published_fine_tuning_batch_rates(book: PriceBook) -> None:
    assert book.cost(MIXED, "ft:gpt-4.1-2025-04-14:acme::a1b2", batch=True) == published(
        "1.50", "0.50", "6.00"
    )
    # genai-prices' batch variant, completed with the table's batch cached-input rate.
    expected = published("0.15", "0.075", "0.60")
    assert book.cost(MIXED, "ft:gpt-4o-mini-2024-07-18:acme::a1b2", batch=True) == expected


def test_fine_tunes_pay_their_base_models_tool_fees(book: PriceBook) -> None:
    rates = book.resolve("ft:gpt-4.1-2025-04-14:acme::a1b2").rates
    assert (rates.web_search, rates.file_search) == (D("10"), D("2.5"))
    searched = Usage(prompt_tokens=1000, web_search_requests=3)
    assert book.cost(searched, "ft:gpt-4.1-2025-04-14:acme::a1b2") == usd(1000, "3") + D("0.03")
    assert book.cost(searched, "ft:gpt-4.1-2025-04-14:acme::a1b2", batch=True) == usd(1000, "1.5") + D("0.03")


def test_the_fine_tuning_table_names_its_source_and_date_and_holds_the_published_rates() -> None:
    import json
    from importlib import resources

    data = json.loads(
        resources.files("budgetguard").joinpath("_data", "openai_prices.json").read_text(encoding="utf-8")
    )
    table = data["fine_tuned"]
    assert table["source"].startswith("https://developers.openai.com/api/docs/pricing")
    assert table["as_of"] == "2026-08-05"
    standard = {
        family: (row["input"], row.get("cached_input"), row["output"])
        for family, row in table["models"].items()
    }
    assert standard == {
        "o4-mini": ("4.00", "1.00", "16.00"),
        "gpt-4.1": ("3.00", "0.75", "12.00"),
        "gpt-4.1-mini": ("0.80", "0.20", "3.20"),
        "gpt-4.1-nano": ("0.20", "0.05", "0.80"),
        "gpt-4o": ("3.75", "1.875", "15.00"),
        "gpt-4o-mini": ("0.30", "0.15", "1.20"),
        "gpt-3.5-turbo": ("3.00", None, "6.00"),
        "davinci-002": ("12.00", None, "12.00"),
        "babbage-002": ("1.60", None, "1.60"),
    }
    residency = data["data_residency"]
    assert (residency["uplift"], residency["released_on_or_after"]) == ("1.1", "2026-03-05")


def test_a_fine_tune_source_names_the_table_and_an_override_still_wins(book: PriceBook) -> None:
    price = book.resolve("ft:o4-mini-2025-04-16:acme::a1b2")
    assert (price.canonical, price.source) == ("ft:o4-mini", "OpenAI fine-tuning prices of 2026-08-05")
    filled = book.resolve("ft:gpt-4o-2024-08-06:acme::a1b2")
    assert filled.source.startswith("genai-prices ") and "fine-tuning prices" in filled.source
    # Fine-tunes made with data sharing are billed at half: an override says so.
    shared = PriceBook(overrides={"ft:o4-mini-2025-04-16:acme::shared": ModelRates(
        input=D("2"), output=D("8"), cached_input=D("0.5"))})  # fmt: skip
    assert shared.cost(MIXED, "ft:o4-mini-2025-04-16:acme::shared") == published("2", "0.5", "8")


@pytest.mark.parametrize(
    ("base_url", "region"),
    [
        ("https://eu.api.openai.com/v1", "eu"),
        ("https://us.api.openai.com/v1/", "us"),
        ("https://jp.api.openai.com", "jp"),
        ("eu.api.openai.com", "eu"),
        ("https://api.openai.com/v1", None),
        ("https://my-resource.openai.azure.com/openai/deployments/x", None),
        ("http://127.0.0.1:8000/v1", None),
        ("https://eu.api.openai.com.evil.example/v1", None),
        ("", None),
        (None, None),
    ],
)
def test_the_data_residency_region_is_read_from_the_clients_base_url(
    base_url: str | None, region: str | None
) -> None:
    from budgetguard._pricing import data_residency_region

    assert data_residency_region(base_url) == region


def test_regional_books_are_views_of_one_book(book: PriceBook) -> None:
    import httpx

    eu = book.for_base_url(httpx.URL("https://eu.api.openai.com/v1/"))
    assert eu.region == "eu" and book.region is None
    assert book.for_base_url("https://eu.api.openai.com/v1") is eu
    assert eu.for_base_url("https://api.openai.com/v1") is book
    assert eu.for_base_url("https://us.api.openai.com/v1") is book.in_region("us")
    assert book.for_base_url(None) is book
    assert eu.resolve("gpt-5.4") == book.resolve("gpt-5.4")  # resolve() reports list prices


def test_the_regional_uplift_is_on_tokens_and_reservations_not_on_tool_fees() -> None:
    book = PriceBook(discount=D("0.1"))
    eu = book.in_region("eu")
    searches = Usage(web_search_requests=1000)
    assert eu.cost(searches, "gpt-5.4") == book.cost(searches, "gpt-5.4") == D("10") * D("0.9")
    assert eu.cost(ONE_M, "gpt-5.4") == book.cost(ONE_M, "gpt-5.4") * D("1.1")
    assert eu.cost_bounds("gpt-5.4", M, M)[1] == book.cost_bounds("gpt-5.4", M, M)[1] * D("1.1")
    assert eu.max_cost_picos("gpt-5.4", M, M) == book.max_cost_picos("gpt-5.4", M, M) * 11 // 10


def test_the_regional_uplift_follows_the_release_date_of_the_model(book: PriceBook) -> None:
    eu = book.in_region("eu")

    def uplifted(model: str) -> bool:
        return eu.cost(ONE_M, model) != book.cost(ONE_M, model)

    # Dates genai-prices lists for the model, a snapshot date asked for, else the GPT version.
    assert uplifted("gpt-5.4-nano") and uplifted("gpt-5.5-pro") and uplifted("gpt-5.6-sol")
    assert not uplifted("gpt-5.3") and not uplifted("gpt-5.2") and not uplifted("o3")
    assert not uplifted("text-embedding-3-small") and not uplifted("gpt-4o-2024-05-13")
    assert uplifted("gpt-5-mini-2031-01-01")  # an unlisted snapshot released after the date
    negotiated = PriceBook(overrides={"gpt-5.4": ModelRates(input=D("2"), output=D("12"))})
    assert negotiated.in_region("eu").cost(ONE_M, "gpt-5.4") == D("14") * D("1.1")


def test_the_innermost_provider_prefix_names_the_model(book: PriceBook) -> None:
    assert book.resolve("openrouter/openai/gpt-4o").canonical == "gpt-4o"
    claude = book.resolve("openrouter/anthropic/claude-sonnet-4-5")
    assert claude.canonical == "claude-sonnet-4-5" and claude.source.endswith("(anthropic)")
    assert book.resolve("azure/eastus/gpt-4o-2024-08-06").canonical == "gpt-4o"
    assert book.resolve("azure_openai/westeurope/gpt-4o-mini").canonical == "gpt-4o-mini"
    aliased = PriceBook(aliases={"eu-chat": "azure/swedencentral/gpt-4.1"})
    assert aliased.resolve("eu-chat").canonical == "gpt-4.1"


def test_an_amazon_bedrock_model_id_is_priced_at_aws_rates(book: PriceBook) -> None:
    # genai-prices' aws provider: in-region inference profiles cost 10% more than global ones.
    regional = book.resolve("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert (regional.rates.input, regional.rates.output) == (D("3.3"), D("16.5"))
    assert regional.source.endswith("(aws)")
    assert book.resolve("global.anthropic.claude-sonnet-4-5-20250929-v1:0").rates.input == D("3")
    assert book.resolve("amazon.nova-pro-v1:0").source.endswith("(aws)")
    # Names with a dot in their version are not Bedrock ids: priced where they were.
    assert book.resolve("gpt-4.1").source == book.resolve("gpt-4.1-2025-04-14").source
    assert book.resolve("claude-3.5-sonnet").source.endswith("(anthropic)")


def test_a_latest_alias_genai_prices_does_not_list_is_priced_as_its_target(book: PriceBook) -> None:
    price = book.resolve("gpt-5.4-chat-latest")
    assert (price.canonical, price.rates) == ("gpt-5.4", book.resolve("gpt-5.4").rates)
    assert "'-latest' alias" in price.source
    assert book.resolve("gpt-35-turbo-0613").source.endswith("Azure's name for gpt-3.5-turbo-0613")


# -- tool fees (issue 10 item 5) ------------------------------------------------------------------------


def test_openai_web_searches_are_priced_per_thousand_calls(book: PriceBook) -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=100, web_search_requests=3)
    assert book.resolve("gpt-4.1").rates.web_search == D("10")
    assert book.cost(usage, "gpt-4.1") == usd(1000, "2") + usd(100, "8") + D("0.03")


def test_file_search_calls_are_priced_when_the_usage_counts_them(book: PriceBook) -> None:
    from types import SimpleNamespace

    assert book.resolve("gpt-4.1").rates.file_search == D("2.5")
    fields = {name: 0 for name in Usage.__dataclass_fields__ if name.endswith(("tokens", "requests"))}
    counted = SimpleNamespace(**{**fields, "prompt_tokens": 1000, "file_search_requests": 4})
    assert book.cost(counted, "gpt-4.1") == usd(1000, "2") + D("0.01")  # type: ignore[arg-type]
    assert book.cost(Usage(prompt_tokens=1000), "gpt-4.1") == usd(1000, "2")  # no such field: none
    override = PriceBook(overrides={"m": ModelRates.from_mapping(
        {"input": 1, "output": 2, "file_search": "2.50"}, where="pricing.models.m")})  # fmt: skip
    assert override.cost(counted, "m") == usd(1000, "1") + D("0.01")  # type: ignore[arg-type]
    negative = SimpleNamespace(**{**fields, "file_search_requests": -1})
    with pytest.raises(ValueError, match="negative"):
        book.cost(negative, "gpt-4.1")  # type: ignore[arg-type]
