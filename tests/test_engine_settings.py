"""The strategy's named limits: the client's defaults, the seed's variable names, clear errors."""

import pytest

from ats_resources.settings import ConfigError
from live.engine.settings import ExecutionCosts, StrategySettings
from tests.conftest import REPO_ROOT


def test_defaults_are_the_clients():
    s = StrategySettings.from_env({})
    assert (s.max_active_tickers, s.focus_universe_size) == (150, 40)
    assert (s.risk_percentage, s.max_position_size) == (0.02, 2500.0)


def test_the_seeds_variable_names_set_the_limits():
    s = StrategySettings.from_env({"MAX_POSITION_SIZE": "1000", "RISK_PERCENTAGE": "0.01"})
    assert (s.max_position_size, s.risk_percentage) == (1000.0, 0.01)
    assert StrategySettings.from_env({"ATS_MAX_OPEN_POSITIONS": "5"}).max_open_positions == 5


def test_env_sample_lists_every_setting_at_its_default():
    lines = (REPO_ROOT / ".env.sample").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert StrategySettings.from_env(env) == StrategySettings()
    assert ExecutionCosts.from_env(env) == ExecutionCosts()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RISK_PERCENTAGE": "2"}, "RISK_PERCENTAGE=2.0 must be a fraction"),
        ({"FOCUS_UNIVERSE_SIZE": "200"}, "exceeds MAX_ACTIVE_TICKERS"),
        ({"ATS_MAX_DRAWDOWN": "lots"}, "ATS_MAX_DRAWDOWN='lots' is not a number"),
        ({"ATS_ALLOW_SHORT": "maybe"}, "ATS_ALLOW_SHORT='maybe' is not on/off"),
    ],
)
def test_a_bad_limit_is_one_line_that_names_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        StrategySettings.from_env(env)


def test_regulatory_fees_apply_to_sales_only_and_round_to_the_cent():
    costs = ExecutionCosts()
    assert costs.fees("buy", 100, 50.0) == 0.0
    # SEC 27.80e-6 x $5,000 = $0.139 plus FINRA 100 x $0.000166 = $0.0166 -> $0.16
    assert costs.fees("sell", 100, 50.0) == 0.16
    # FINRA's fee is capped at $8.30 a trade
    assert costs.fees("sell", 100_000, 1.0) == round(2.78 + 8.30, 2)
