"""The rule table, the thresholds, the task routing and the README say the same thing."""

from pathlib import Path

import pytest

from streams.detectors.tasks import QUEUES, TASK_RULES
from streams.rulebook import RULES, describe
from streams.settings import Settings, SettingsError
from streams.thresholds import Thresholds

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_rule_is_in_the_readme_rule_table_with_its_audience_and_queue():
    text = README.read_text()
    table = text[text.index("## Rules"):text.index("### Alert lifecycle")]
    for rule in RULES:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{rule.name}` |"))
        assert f"| `{rule.audience}` |" in row, rule.name
        assert (f"| `{rule.queue}` |" if rule.queue else "| none |") in row, rule.name


def test_every_task_rule_is_a_rule_with_a_known_queue():
    assert set(TASK_RULES) <= {rule.name for rule in RULES}
    assert {queue for queue, _, _ in TASK_RULES.values()} <= set(QUEUES)


def test_forewarn_rules_shows_every_threshold_variable_with_its_value():
    limits = Thresholds.from_env({"FOREWARN_SLA_CHAT_S": "90", "FOREWARN_RETURN_SPIKE_PERCENT": "15"})
    text = describe(limits, {"max_alternatives": "3", "stockout_rollup_orders": "20"})
    for _, env, value in limits.describe():
        assert env in text, env
    assert "FOREWARN_SLA_CHAT_S" in text and " 90 s" in text
    assert limits.sla_chat_ms == 90_000 and limits.return_spike_percent == 15


@pytest.mark.parametrize("env, message", [
    ({"FOREWARN_SLA_CHAT_S": "soon"}, "FOREWARN_SLA_CHAT_S='soon': expected a number of seconds"),
    ({"FOREWARN_BACKLOG_TICKETS": "0"}, "FOREWARN_BACKLOG_TICKETS='0': expected a whole number, 1 or more"),
    ({"FOREWARN_WEB_ERROR_MIN": "2.5"}, "FOREWARN_WEB_ERROR_MIN='2.5': expected a whole number"),
])
def test_a_bad_threshold_names_its_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)
