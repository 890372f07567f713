"""YAML configuration: typed, exact, and every error names the file, the line and the key."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from budgetguard import _config
from budgetguard._config import config_from_env, load_config, parse_config
from budgetguard._errors import ConfigError
from budgetguard._ledger import ledger_schemes
from budgetguard._pricing import ModelRates
from budgetguard._windows import Calendar, Rolling

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "budgetguard.yaml"
SCHEMA = ROOT / "config" / "schema.json"


def parse(text: str) -> _config.Config:
    return parse_config(textwrap.dedent(text), "team.yaml")


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# --- the example ----------------------------------------------------------------------------------


def test_the_annotated_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.source == str(EXAMPLE)
    daily = config.budgets["daily"]
    assert daily.max_usd == Decimal("25.00")
    assert daily.max_tokens == 5_000_000
    assert daily.window == Calendar("day", "America/New_York")
    assert daily.window_text == "1d"
    assert daily.alerts == (Decimal("0.5"), Decimal("0.8"), Decimal(1))
    assert config.budgets["per-user"].window == Rolling(3600)
    assert config.budgets["per-user"].keyed
    assert config.pricing.models["my-finetune"].cached_input == Decimal("1.50")
    assert config.pricing.aliases["prod-chat"] == "gpt-4o-mini"
    assert config.defaults.fallback_price == ModelRates(input=Decimal(5), output=Decimal(20))


def test_the_example_shows_every_option() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert set(_config._DEFAULT_KEYS) <= set(data["defaults"])
    in_budgets = set().union(*(spec.keys() for spec in data["budgets"].values()))
    assert set(_config._BUDGET_KEYS) <= in_budgets
    assert set(_config._PRICING_KEYS) <= set(data["pricing"])
    rate_keys = set().union(*(rates.keys() for rates in data["pricing"]["models"].values()))
    assert set(ModelRates.__dataclass_fields__) <= rate_keys


def test_the_schema_allows_exactly_the_keys_the_loader_allows() -> None:
    schema = json.loads(SCHEMA.read_text())
    defs = schema["$defs"]
    assert tuple(schema["properties"]) == _config._TOP_KEYS
    assert set(defs["defaults"]["properties"]) == set(_config._DEFAULT_KEYS)
    assert set(defs["budget"]["properties"]) == set(_config._BUDGET_KEYS)
    assert set(defs["pricing"]["properties"]) == set(_config._PRICING_KEYS)
    assert set(defs["rates"]["properties"]) == set(ModelRates.__dataclass_fields__)
    assert defs["policy"]["enum"] == list(_config._POLICIES)


def test_the_example_validates_against_the_schema() -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed; the loader test covers it"
    )
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(EXAMPLE.read_text()))


def test_the_schema_rejects_what_the_loader_rejects() -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed; the loader test covers it"
    )
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for budget in ({"max_usdd": 1}, {"max_usd": -1}, {"on_exceed": "wait"}, {"window": "fortnight"},
                   {"store": "postgres://x"}, {"alerts": [0.5]}, {"rolling": True}):  # fmt: skip
        data = {"version": 1, "budgets": {"b": budget}}
        assert not validator.is_valid(data), budget
        with pytest.raises(ConfigError):
            parse_config(yaml.safe_dump(data))


# --- values ---------------------------------------------------------------------------------------


def test_money_is_read_exactly_as_written() -> None:
    config = parse("""
        version: 1
        budgets:
          a: {max_usd: 0.1}
          b: {max_usd: 0.30000000000000004}
          c: {max_usd: "$12.50"}
          d: {max_usd: 1_000.000_1}
          e: {max_usd: 7}
        pricing:
          discount: 0.15
          models:
            m: {input: 0.075, output: 0.3}
    """)
    assert [b.max_usd for b in config.budgets.values()] == [
        Decimal("0.1"), Decimal("0.30000000000000004"), Decimal("12.50"), Decimal("1000.0001"), Decimal(7),
    ]  # fmt: skip
    assert config.pricing.discount == Decimal("0.15")
    assert config.pricing.models["m"].input == Decimal("0.075")


def test_budgets_inherit_the_defaults() -> None:
    config = parse("""
        version: 1
        defaults:
          on_exceed: wait
          max_wait: 45
          store: sqlite:///spend.db
          timezone: Asia/Tokyo
          hold_ttl: 120
        budgets:
          daily: {max_usd: 5, window: 1d}
          own: {max_usd: 5, window: 1d, timezone: UTC, on_exceed: raise, store: memory://, hold_ttl: 5}
    """)
    daily, own = config.budgets["daily"], config.budgets["own"]
    assert (daily.on_exceed, daily.max_wait, daily.store, daily.hold_ttl) == (
        "wait",
        45.0,
        "sqlite:///spend.db",
        120,
    )
    assert daily.window == Calendar("day", "Asia/Tokyo")
    assert (own.on_exceed, own.max_wait, own.store, own.hold_ttl) == ("raise", None, "memory://", 5)
    assert own.window == Calendar("day", "UTC")


def test_fail_open_is_inherited_only_by_budgets_whose_store_takes_it() -> None:
    config = parse("""
        version: 1
        defaults: {fail_open: true, store: "redis://localhost:6379/0"}
        budgets:
          shared: {max_usd: 5}
          local: {max_usd: 5, store: "sqlite:///spend.db"}
          closed: {max_usd: 5, fail_open: false}
    """)
    assert config.defaults.fail_open is True
    assert {name: b.fail_open for name, b in config.budgets.items()} == {
        "shared": True,
        "local": False,
        "closed": False,
    }
    exc = error("""
        version: 1
        budgets:
          b: {store: "sqlite:///spend.db", fail_open: true}
    """)
    assert exc.key == "budgets.b.fail_open"
    takes = ", ".join(f"{scheme}://" for scheme in ledger_schemes("fail_open"))
    assert takes.startswith("redis://, rediss://")
    assert f"fail_open applies to {takes} stores; this budget's store is 'sqlite:///spend.db'" in str(exc)


def test_a_minimal_config_has_safe_defaults() -> None:
    config = parse("version: 1\n")
    assert config.budgets == {}
    assert config.defaults == _config.Defaults()
    assert config.defaults.on_exceed == "raise"
    assert config.defaults.unknown_model == "error"
    assert config.pricing == _config.PricingConfig({}, {})


def test_alerts_take_fractions_or_percentages_sorted_once() -> None:
    config = parse("""
        version: 1
        budgets:
          b: {max_tokens: 100, alerts: ["90%", 0.5, 1, "50%", "12.5 %"]}
    """)
    assert config.budgets["b"].alerts == (Decimal("0.125"), Decimal("0.5"), Decimal("0.9"), Decimal(1))


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = parse("""
        version: 1
        budgets:
          base: &base {max_usd: 5, window: 1h, rolling: true}
          copy:
            <<: *base
            max_usd: 9
    """)
    assert config.budgets["copy"].max_usd == Decimal(9)
    assert config.budgets["copy"].window == Rolling(3600)


# --- errors: file, line and key -------------------------------------------------------------------


def test_malformed_yaml_names_the_file_line_and_nearest_key() -> None:
    exc = error("""
        version: 1
        budgets:
          daily:
            max_usd: [1, 2
            window: 1d
    """)
    assert exc.source == "team.yaml"
    assert exc.line is not None
    assert exc.line >= 5
    assert exc.key is not None
    assert exc.key.startswith("budgets.daily")
    assert str(exc).startswith(f"team.yaml:{exc.line} at 'budgets.daily")
    assert "invalid YAML" in str(exc)


def test_a_tab_indented_file_fails_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("version: 1\nbudgets:\n\tdaily:\n\t\tmax_usd: 1\n")
    with pytest.raises(ConfigError, match=rf"{path}:3") as info:
        load_config(path)
    assert info.value.key == "budgets.daily"


def test_a_misspelled_key_is_named_with_a_suggestion() -> None:
    exc = error("""
        version: 1
        budgets:
          daily:
            max_usd: 5
            widnow: 1d
    """)
    assert str(exc) == (
        "team.yaml:6 at 'budgets.daily.widnow': unknown key 'widnow' (did you mean 'window'?); allowed here: "
        + ", ".join(_config._BUDGET_KEYS)
    )


def budget(*lines: str) -> str:
    """A config whose budget ``b`` has these lines; the first of them is line 4."""
    return "version: 1\nbudgets:\n  b:\n" + "".join(f"    {line}\n" for line in lines)


def defaults(*lines: str) -> str:
    """A config whose defaults have these lines; the first of them is line 3."""
    return "version: 1\ndefaults:\n" + "".join(f"  {line}\n" for line in lines)


def model(*lines: str) -> str:
    """A config pricing model ``m`` with these lines; the first of them is line 5."""
    return "version: 1\npricing:\n  models:\n    m:\n" + "".join(f"      {line}\n" for line in lines)


B = "budgets.b"
M = "pricing.models.m"
A = "pricing.aliases.a"
LONG = ("  input: 1", "  output: x")


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (budget("max_tokens: lots"), 4, f"{B}.max_tokens", "must be a whole number, got 'lots'"),
        (budget("max_tokens: 1.5"), 4, f"{B}.max_tokens", "whole number, got 1.5"),
        (budget("max_usd: -3"), 4, f"{B}.max_usd", "must not be negative"),
        (budget("max_usd: ten"), 4, f"{B}.max_usd", "an amount in USD"),
        (budget("max_usd: .inf"), 4, f"{B}.max_usd", "an amount in USD"),
        (budget("max_requests: true"), 4, f"{B}.max_requests", "whole number, got true"),
        (budget("keyed: maybe"), 4, f"{B}.keyed", "must be true or false"),
        (budget("window: 7d"), 4, f"{B}.window", "a calendar window is one unit"),
        (budget("window: fortnight"), 4, f"{B}.window", "invalid window 'fortnight'"),
        (budget("window: 1d", "timezone: Mars/Base"), 5, f"{B}.timezone", "unknown time zone 'Mars/Base'"),
        (budget("rolling: true"), 4, f"{B}.rolling", "no effect without a window"),
        (budget("window: 1h", "rolling: true", "timezone: UTC"), 6, f"{B}.timezone", "zone has no effect"),
        (budget("on_exceed: wiat"), 4, f"{B}.on_exceed", "did you mean 'wait'"),
        (budget("max_usd: 1", "on_exceed: wait"), 5, f"{B}.on_exceed", "wait needs a window"),
        (budget("max_usd: 1", "max_wait: 5"), 5, f"{B}.max_wait", "applies to on_exceed: wait"),
        (budget("window: 1d", "alerts: [0.5]"), 5, f"{B}.alerts", "has none"),
        (budget("max_usd: 1", "alerts:", "  - 0.5", "  - eighty"), 7, f"{B}.alerts[1]", "percentage"),
        (budget("max_usd: 1", "alerts: [0]"), 5, f"{B}.alerts[0]", "above 0"),
        (budget("store: postgres://db"), 4, f"{B}.store", "unknown store scheme"),
        (budget("store: sqlite://x.db"), 4, f"{B}.store", "three slashes"),
        (budget("fail_open: true"), 4, f"{B}.fail_open", "applies to redis://"),
        (budget("hold_ttl: 0"), 4, f"{B}.hold_ttl", "more than 0 seconds"),
        (budget("max_usd: 1", "max_usd: 2"), 5, None, "duplicate key 'max_usd' (first on line 4)"),
        ("version: 1\nbudgets:\n  b: 5\n", 3, B, "must be a mapping, got 5"),
        ("version: 1\nbudgets:\n  b:\n", 3, B, "not null"),
        ("version: 1\nbudgets:\n  b c: {}\n", 3, "budgets.b c", "invalid budget name"),
        (defaults("unknown_model: warn"), 3, "defaults.unknown_model", "needs a fallback_price"),
        (defaults("safety_margin: 50"), 3, "defaults.safety_margin", "at most 10"),
        (defaults("assume_output_tokens: 0"), 3, "defaults.assume_output_tokens", "at least 1"),
        (defaults("on_exceed: explode"), 3, "defaults.on_exceed", "must be one of raise, warn"),
        (defaults("store: mem"), 3, "defaults.store", "invalid store URI"),
        ("version: 1\npricing:\n  discount: 1.5\n", 3, "pricing.discount", "below 1"),
        (model("input: 1", "ouput: 2"), 6, f"{M}.ouput", "did you mean 'output'"),
        (model("input: 1"), 4, f"{M}.output", "missing"),
        (model("input: free", "output: 1"), 5, f"{M}.input", "must be a number"),
        (
            model("input: 1", "output: 1", "long_context_threshold: 10", "long_context:", *LONG),
            8, f"{M}.long_context.output", "must be a number",
        ),
        ("version: 1\npricing:\n  aliases:\n    a: b\n    b: a\n", 4, A, "alias loop: a -> b -> a"),
        ("version: 1\npricing:\n  aliases:\n    a: 3\n", 4, A, "must name the model"),
        ("version: 2\n", 1, "version", "unsupported configuration version 2"),
        ("budgets: {}\n", 1, "version", "missing 'version: 1'"),
        ("version: 1\nbugdets: {}\n", 2, "bugdets", "did you mean 'budgets'"),
    ],
)  # fmt: skip
def test_each_error_names_the_file_line_and_key(text: str, line: int, key: str | None, message: str) -> None:
    exc = error(text)
    assert message in str(exc)
    assert (exc.source, exc.line, exc.key) == ("team.yaml", line, key)
    assert str(exc).startswith(f"team.yaml:{line}")


def test_an_empty_file_says_how_to_start() -> None:
    assert "start with 'version: 1'" in str(error(""))


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    assert "must be a mapping of keys" in str(error("- version: 1\n"))


# --- files and the environment --------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: configuration file not found"):
        load_config(tmp_path / "nope.yaml")


def test_the_environment_variable_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bg.yaml"
    path.write_text("version: 1\nbudgets:\n  env: {max_usd: 1}\n")
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(path))
    config = config_from_env()
    assert config is not None
    assert list(config.budgets) == ["env"]


def test_without_the_environment_variable_there_is_no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    assert config_from_env() is None


def test_a_missing_file_named_by_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(
        ConfigError, match=r"gone\.yaml: configuration file not found \(named by \$BUDGETGUARD_CONFIG\)"
    ):
        config_from_env()


# --- every problem at once ------------------------------------------------------------------------


def test_every_problem_in_a_file_is_reported_with_its_line_and_key() -> None:
    exc = error("""
        version: 1
        defaults:
          safety_margin: 50
        budgets:
          a: {max_usd: -1, window: 1d}
          b:
            max_usdd: 3
            on_exceed: wiat
          "c d": {}
        pricing:
          discount: 2
    """)
    assert isinstance(exc, _config.ConfigErrors)
    found = [(p.line, p.key) for p in exc.problems]
    assert found == [
        (4, "defaults.safety_margin"),
        (6, "budgets.a.max_usd"),
        (8, "budgets.b.max_usdd"),
        (9, "budgets.b.on_exceed"),
        (10, "budgets.c d"),
        (12, "pricing.discount"),
    ]
    assert (exc.line, exc.key) == (4, "defaults.safety_margin")  # the first, as for a single problem
    assert str(exc).splitlines() == [str(p) for p in exc.problems]
    assert _config.config_problems(exc) == exc.problems


def test_a_single_problem_is_a_plain_config_error() -> None:
    exc = error(budget("max_usd: -3"))
    assert type(exc) is ConfigError
    assert _config.config_problems(exc) == (exc,)


def test_one_wrong_value_does_not_cause_a_second_complaint_about_its_neighbours() -> None:
    # The window is wrong: its rolling flag and zone are not also called "without a window".
    exc = error(budget("window: fortnight", "rolling: true", "on_exceed: wait"))
    assert [p.key for p in _config.config_problems(exc)] == [f"{B}.window"]


def test_a_store_whose_directory_does_not_exist_is_a_problem_when_stores_are_checked(tmp_path: Path) -> None:
    text = f"""\
version: 1
defaults:
  store: sqlite:///{tmp_path}/nowhere/spend.db
budgets:
  ok: {{max_usd: 1, store: "sqlite:///{tmp_path}/spend.db"}}
  lost: {{max_usd: 1, store: "sqlite:///{tmp_path}/gone/spend.db"}}
"""
    parse_config(text, "team.yaml")  # without the check: the file may be for another host
    with pytest.raises(ConfigError) as info:
        parse_config(text, "team.yaml", check_stores=True)
    problems = _config.config_problems(info.value)
    assert [(p.line, p.key) for p in problems] == [(3, "defaults.store"), (6, "budgets.lost.store")]
    assert f"the directory of this store does not exist: {tmp_path}/gone" in str(problems[1])


def test_a_relative_store_path_is_checked_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="relative to the working directory"):
        parse_config(budget("store: sqlite:///data/spend.db"), "team.yaml", check_stores=True)
    (tmp_path / "data").mkdir()
    parse_config(budget("store: sqlite:///data/spend.db"), "team.yaml", check_stores=True)


# --- configure() keyword arguments: the same readers ----------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "yaml_line", "message"),
    [
        ("assume_output_tokens", -5, "assume_output_tokens: -5", "must be at least 1, got -5"),
        ("assume_output_tokens", 0, "assume_output_tokens: 0", "must be at least 1, got 0"),
        ("assume_output_tokens", 2.5, "assume_output_tokens: 2.5", "must be a whole number, got 2.5"),
        ("safety_margin", float("nan"), "safety_margin: .nan", "must be a number, got NaN"),
        ("safety_margin", float("inf"), "safety_margin: .inf", "must be a number, got Infinity"),
        ("safety_margin", -0.1, "safety_margin: -0.1", "must not be negative"),
        ("safety_margin", 50, "safety_margin: 50", "at most 10"),
        ("unknown_model", "ignore", "unknown_model: ignore", "must be one of error, warn"),
        ("unknown_model", "warn", "unknown_model: warn", "needs a fallback_price"),
        ("fallback_price", {"input": 1}, "fallback_price: {input: 1}", "missing"),
    ],
)  # fmt: skip
def test_configure_refuses_what_the_file_refuses_with_the_same_message(
    option: str, value: object, yaml_line: str, message: str
) -> None:
    import budgetguard as bg

    in_file = error(defaults(yaml_line))
    with pytest.raises(ConfigError) as in_code:
        bg.configure(**{option: value})  # type: ignore[arg-type]
    assert message in str(in_file) and message in str(in_code.value)
    assert _config._bare(in_file) == _config._bare(in_code.value)
    assert str(in_code.value).startswith(f"configure() at '{option}")


def test_configure_checks_prices_aliases_and_discount_like_the_pricing_section() -> None:
    import budgetguard as bg

    with pytest.raises(ConfigError) as info:
        bg.configure(prices={"m": {"input": 1, "output": "x"}}, aliases={"a": "b", "b": "a"}, discount=1.5)
    assert [(p.key, p.line) for p in _config.config_problems(info.value)] == [
        ("prices.m.output", None),
        ("aliases.a", None),
        ("discount", None),
    ]


def test_a_refused_configure_changes_nothing() -> None:
    import budgetguard as bg
    from budgetguard._settings import current_settings

    bg.configure(safety_margin=0.1)
    with pytest.raises(ConfigError):
        bg.configure(safety_margin=0.2, assume_output_tokens=-1)
    assert current_settings().safety_margin == 0.1


def test_configure_reads_numbers_exactly_and_keyword_arguments_win_over_the_file(tmp_path: Path) -> None:
    import budgetguard as bg
    from budgetguard._settings import current_settings

    path = tmp_path / "bg.yaml"
    path.write_text("version: 1\ndefaults:\n  safety_margin: 0.5\n  assume_output_tokens: 100\n")
    bg.configure(path, safety_margin=0.05, discount=0.1, prices={"m": {"input": 0.075, "output": 0.3}})
    settings = current_settings()
    assert (settings.safety_margin, settings.assume_output_tokens) == (0.05, 100)
    book = settings.price_book()
    assert book.resolve("m").rates.input == Decimal("0.075")  # exactly, not the float's binary value
    assert book.discount == Decimal("0.1")
    assert bg.configure(unknown_model="warn", fallback_price={"input": 1, "output": 2}) is None


def test_configure_can_lean_on_the_files_fallback_price(tmp_path: Path) -> None:
    import budgetguard as bg

    path = tmp_path / "bg.yaml"
    path.write_text("version: 1\ndefaults:\n  fallback_price: {input: 1, output: 2}\n")
    bg.configure(path, unknown_model="warn")  # the file supplies the price this needs


# --- the active configuration: configure() or $BUDGETGUARD_CONFIG ---------------------------------


def test_without_configure_the_active_config_is_loaded_once_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from budgetguard._settings import active_config, configure, current_settings

    path = tmp_path / "bg.yaml"
    path.write_text("version: 1\nbudgets:\n  env: {max_usd: 1}\npricing:\n  aliases: {prod: gpt-4o-mini}\n")
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(path))
    configure(safety_margin=0.2)  # before the file was named: kept when it is loaded
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(path))
    config = active_config()
    assert list(config.budgets) == ["env"]
    assert active_config() is config  # loaded once
    settings = current_settings()
    assert settings.config is config and settings.safety_margin == 0.2
    assert settings.price_book().resolve("prod").canonical.startswith("gpt-4o-mini")


def test_configure_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetguard._settings import active_config, configure

    mine, env = tmp_path / "mine.yaml", tmp_path / "env.yaml"
    mine.write_text("version: 1\nbudgets:\n  mine: {max_usd: 1}\n")
    env.write_text("version: 1\nbudgets:\n  env: {max_usd: 1}\n")
    monkeypatch.setenv("BUDGETGUARD_CONFIG", str(env))
    configure(mine)
    assert list(active_config().budgets) == ["mine"]


def test_with_neither_the_error_names_configure_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from budgetguard._settings import active_config

    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"budgetguard\.configure\(path\).*\$BUDGETGUARD_CONFIG"):
        active_config()
