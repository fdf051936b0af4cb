"""The notification configuration (YAML and TOML, errors naming the line), what is sent, and the commit rule."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from streams.cli import main
from streams.notify import (NotifyConfigError, OffsetTracker, alertmanager_alert, config_from_settings, load_config,
                            parse_config, signature, slack_body, webhook_body)
from streams.settings import Settings, SettingsError

GOOD_YAML = """\
web_url: https://forewarn.example.com/
destinations:
  - name: ops-am
    type: alertmanager
    url: http://alertmanager:9093
    labels: {team: shop}
    resend_seconds: 30
    ends_after_seconds: 120
  - name: cs-slack
    type: webhook
    url: https://hooks.example.com/services/T/B/secret-path
    format: slack
    secret_env: CS_SLACK_SECRET
routes:
  - audience: [ops, it]
    to: ops-am
  - audience: cs
    severity: [warning, critical]
    to: [cs-slack, ops-am]
  - rule: out_of_stock_open_order
    to: cs-slack
"""

GOOD_TOML = """\
web_url = "https://forewarn.example.com/"

[[destinations]]
name = "ops-am"
type = "alertmanager"
url = "http://alertmanager:9093"

[[destinations]]
name = "hook"
type = "webhook"
url = "https://example.com/hook"
secret = "s3cret"

[destinations.headers]
Authorization = "Bearer abc"

[[routes]]
audience = ["ops"]
to = "ops-am"

[[routes]]
to = ["hook"]
"""


def alert(**changes) -> dict:
    record = {"alert_id": "a1", "rule": "out_of_stock_open_order", "status": "open", "severity": "warning",
              "audience": "cs", "dedup_key": "oos:O1", "title": "Order O1 <short>", "summary": "1 line short",
              "customer_id": "C1", "order_id": "O1", "sku": None, "ticket_id": None, "session_id": None,
              "page": None, "category": None, "details": {}, "evidence": ["e1"], "event_ts": 1_000, "detected_at": 2_000}
    record.update(changes)
    return record


def error_of(text: str, kind: str = "yaml", env: dict | None = None) -> str:
    with pytest.raises(NotifyConfigError) as caught:
        parse_config(text, kind, env or {})
    return str(caught.value)


def test_a_yaml_file_gives_destinations_and_routes():
    config = parse_config(GOOD_YAML, "yaml", {"CS_SLACK_SECRET": "xyz"})
    assert list(config.destinations) == ["ops-am", "cs-slack"]
    am, slack = config.destinations["ops-am"], config.destinations["cs-slack"]
    assert am.labels == (("team", "shop"),) and am.resend_s == 30 and am.ends_after_s == 120
    assert slack.secret == "xyz" and slack.format == "slack"
    assert config.destinations_for(alert(audience="ops", rule="payment_failed")) == ["ops-am"]
    assert config.destinations_for(alert(audience="ops")) == ["ops-am", "cs-slack"]  # and the rule's route
    assert config.destinations_for(alert(severity="critical", rule="payment_failed")) == ["cs-slack", "ops-am"]
    assert config.destinations_for(alert(severity="info")) == ["cs-slack"]  # the rule's route
    assert config.destinations_for(alert(severity="info", rule="payment_failed")) == []
    # Secrets are not in what a log or error would show.
    assert "secret-path" not in repr(slack) and "xyz" not in repr(slack)
    assert slack.shown == "cs-slack (webhook, https://hooks.example.com)"


def test_a_toml_file_gives_the_same_shape():
    config = parse_config(GOOD_TOML, "toml", {})
    assert config.web_url == "https://forewarn.example.com/"
    assert config.destinations["hook"].headers == (("Authorization", "Bearer abc"),)
    assert config.destinations_for(alert(audience="ops")) == ["ops-am", "hook"]


def test_a_routes_conditions_may_be_grouped_under_match():
    config = parse_config("destinations:\n  - {name: a, type: webhook, url: 'http://a/'}\n"
                          "routes:\n  - match: {audience: ops, severity: [critical]}\n    to: a\n", "yaml")
    assert config.destinations_for(alert(audience="ops", severity="critical")) == ["a"]
    assert config.destinations_for(alert(audience="ops")) == []
    assert error_of("destinations:\n  - {name: a, type: webhook, url: 'http://a/'}\n"
                    "routes:\n  - match:\n      team: ops\n    to: a\n") == (
        "line 5: routes[0].match: unknown field 'team'; expected one of audience, rule, severity")
    assert error_of("destinations:\n  - {name: a, type: webhook, url: 'http://a/'}\n"
                    "routes:\n  - match: {rule: cart_lost}\n    audience: ops\n    to: a\n").startswith(
        "line 5: routes[0].audience: expected it under match, or match without it, not both")


def test_without_routes_every_destination_gets_every_alert():
    config = parse_config("destinations:\n  - {name: a, type: webhook, url: 'http://a/'}\n"
                          "  - {name: b, type: alertmanager, url: 'http://b/'}\n", "yaml")
    assert config.destinations_for(alert(audience="product", severity="info")) == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("destinations:\n  - name: a\n    type: webhook\n    url: ftp://a\n",
     "line 4: destinations[0].url: expected an http(s)://host[:port][/path] URL"),
    ("destinations:\n  - name: a\n    type: pager\n    url: http://a\n",
     "line 3: destinations[0].type: expected one of alertmanager, webhook, got 'pager'"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    colour: red\n",
     "line 5: destinations[0]: unknown field 'colour'; expected one of name, type, url"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    timeout_seconds: fast\n",
     "line 5: destinations[0].timeout_seconds: expected a number of seconds above 0, up to 600, got 'fast'"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    format: xml\n",
     "line 5: destinations[0].format: expected one of json, slack, got 'xml'"),
    ("destinations:\n  - name: a\n    type: alertmanager\n    url: http://a\n    resend_seconds: 60\n"
     "    ends_after_seconds: 30\n",
     "line 6: destinations[0].ends_after_seconds: expected more than resend_seconds (60)"),
    ("destinations:\n  - name: a\n    type: alertmanager\n    url: http://a\n    labels: {1bad: x}\n",
     "line 5: destinations[0].labels.1bad: not a valid label name"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    secret_env: MISSING\n",
     "line 5: destinations[0].secret_env: expected a variable that is set, but MISSING is unset or empty"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n  - name: a\n    type: webhook\n"
     "    url: http://b\n", "line 5: destinations[1].name: 'a' is used twice"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\nroutes:\n  - audience: ops\n",
     "line 6: routes[0]: to is missing"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\nroutes:\n  - audience: ops\n    to: b\n",
     "line 7: routes[0].to: expected destination names given under destinations (a), got 'b'"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\nroutes:\n  - rule: no_such_rule\n    to: a\n",
     "line 6: routes[0].rule: expected a rule or a list of them (one of"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\nroutes:\n  - severity: [warning, loud]\n"
     "    to: a\n", "line 6: routes[0].severity: expected a severity or a list of them (one of info, warning, "
                   "critical), got 'loud'"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    url: http://b\n",
     "line 5: url is given twice (first on line 4)"),
    ("destinations:\n  - name: a\n   type: webhook\n", "line 3: not valid YAML"),
    ("routes: []\n", "line 1: destinations is missing"),
    ("destinations:\n  - name: a\n    type: webhook\n    url: http://a\nwebhook: x\n",
     "line 5: unknown field 'webhook'; expected one of web_url, destinations, routes"),
])
def test_a_bad_yaml_file_is_refused_naming_the_line_and_the_field(text, message):
    assert error_of(text).startswith(message)


def test_a_secret_is_never_shown_in_an_error():
    message = error_of("destinations:\n  - name: a\n    type: webhook\n    url: http://a\n    secret: 42\n")
    assert message == "line 5: destinations[0].secret: expected a non-empty string"
    message = error_of("destinations:\n  - name: a\n    type: webhook\n    url: 'http://x/sec ret'\n")
    assert "sec ret" not in message and message.startswith("line 4: destinations[0].url")


@pytest.mark.parametrize("text, message", [
    ('[[destinations]]\nname = "a"\ntype = "webhook"\nurl = \n', "line 4: not valid TOML"),
    ('[[destinations]]\nname = "a"\ntype = "webhook"\nurl = "http://a"\n\n[[destinations]]\nname = "b"\n'
     'type = "webhook"\nurl = "http://b"\ntimeout_seconds = -1\n',
     "line 10: destinations[1].timeout_seconds: expected a number of seconds above 0"),
    ('[[destinations]]\nname = "a"\ntype = "webhook"\nurl = "http://a"\n\n[[routes]]\naudience = "sales"\nto = "a"\n',
     "line 7: routes[0].audience: expected an audience or a list of them (one of cs, ops, it, product), got 'sales'"),
    ('[[destinations]]\nname = "a"\ntype = "webhook"\nurl = "http://a"\n\n[destinations.labels]\nteam = "x"\n',
     "line 6: destinations[0].labels: expected no such field on a webhook destination"),
])
def test_a_bad_toml_file_is_refused_naming_the_line(text, message):
    assert error_of(text, "toml").startswith(message)


def test_the_file_is_named_by_its_variable(tmp_path):
    path = tmp_path / "notify.yaml"
    path.write_text("destinations:\n  - name: a\n    type: webhook\n")
    with pytest.raises(NotifyConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"FOREWARN_NOTIFY_CONFIG={str(path)!r}: line 2: destinations[0]: url is missing"
    other = tmp_path / "notify.json"
    other.write_text("{}")
    with pytest.raises(NotifyConfigError, match="expected a .yaml, .yml or .toml file"):
        load_config(other, {})


def test_the_simple_urls_add_one_destination_each_getting_every_alert(tmp_path):
    settings = Settings.from_env({"FOREWARN_ALERTMANAGER_URL": "http://am:9093",
                                  "FOREWARN_WEBHOOK_URL": "https://hooks.example.com/T/B/x",
                                  "FOREWARN_WEBHOOK_SECRET": "k", "FOREWARN_WEBHOOK_FORMAT": "slack",
                                  "FOREWARN_WEB_URL": "http://page/"})
    config = config_from_settings(settings, {})
    assert list(config.destinations) == ["alertmanager", "webhook"]
    assert config.destinations["webhook"].secret == "k" and config.destinations["webhook"].format == "slack"
    assert config.destinations_for(alert(audience="product", severity="info")) == ["alertmanager", "webhook"]
    assert config.web_url == "http://page/"
    assert "https://hooks.example.com/T/B/x" not in str(settings.describe())
    assert config_from_settings(Settings.from_env({}), {}) is None
    path = tmp_path / "n.yaml"
    path.write_text("destinations:\n  - {name: webhook, type: webhook, url: 'http://a/'}\n")
    with pytest.raises(SettingsError, match="FOREWARN_WEBHOOK_URL adds a destination named 'webhook'"):
        config_from_settings(Settings.from_env({"FOREWARN_NOTIFY_CONFIG": str(path),
                                                "FOREWARN_WEBHOOK_URL": "http://b/"}), {})


@pytest.mark.parametrize("env, message", [
    ({"FOREWARN_NOTIFY_CONFIG": "/no/such/file.yaml"}, "FOREWARN_NOTIFY_CONFIG='/no/such/file.yaml': expected a YAML"),
    ({"FOREWARN_ALERTMANAGER_URL": "alertmanager:9093"}, "FOREWARN_ALERTMANAGER_URL: expected one http(s)://"),
    ({"FOREWARN_WEBHOOK_URL": "https://hooks/x y"}, "FOREWARN_WEBHOOK_URL: expected one http(s)://"),
    ({"FOREWARN_WEBHOOK_FORMAT": "teams"}, "FOREWARN_WEBHOOK_FORMAT='teams': expected one of json, slack"),
    ({"FOREWARN_METRICS_ADDR": "9464"}, "FOREWARN_METRICS_ADDR='9464': expected host:port"),
    ({"FOREWARN_WEB_URL": "page"}, "FOREWARN_WEB_URL='page': expected http(s)://"),
])
def test_a_bad_setting_names_its_variable(env, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
    assert "x y" not in str(caught.value)


def test_forewarn_notify_refuses_in_one_line_without_a_destination_or_with_a_bad_file(tmp_path, monkeypatch, capsys):
    for name in [k for k in __import__("os").environ if k.startswith("FOREWARN_")]:
        monkeypatch.delenv(name)
    assert main(["notify"]) == 2
    assert capsys.readouterr().err == ("forewarn: `forewarn notify` has nowhere to deliver: set FOREWARN_NOTIFY_CONFIG, "
                                       "FOREWARN_ALERTMANAGER_URL or FOREWARN_WEBHOOK_URL\n")
    path = tmp_path / "notify.toml"
    path.write_text('[[destinations]]\nname = "a"\ntype = "webhook"\nurl = "http://a"\nretries = 3\n')
    monkeypatch.setenv("FOREWARN_NOTIFY_CONFIG", str(path))
    for command in (["notify"], ["up"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"forewarn: FOREWARN_NOTIFY_CONFIG={str(path)!r}: line 5: destinations[0]: unknown field 'retries'")


def test_the_webhook_signature_is_an_hmac_of_the_body():
    body = b'{"a":1}'
    expected = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert signature("key", body) == f"sha256={expected}"


def test_what_a_webhook_and_alertmanager_are_sent():
    config = parse_config(GOOD_YAML, "yaml", {"CS_SLACK_SECRET": "xyz"})
    link = "https://forewarn.example.com/alerts?rule=out_of_stock_open_order#alert-a1"
    body = json.loads(webhook_body(alert(), config.destinations["cs-slack"], link))
    assert body["text"] == "[warning] Order O1 <short> (opened)"
    assert "&lt;short&gt;" in body["blocks"][0]["text"]["text"] and link in body["blocks"][0]["text"]["text"]
    assert slack_body(alert(status="resolved"), None)["text"].endswith("(resolved)")
    plain = parse_config("destinations:\n  - {name: h, type: webhook, url: 'http://h/'}\n", "yaml")
    record = json.loads(webhook_body(alert(), plain.destinations["h"], None))
    assert record["dedup_key"] == "oos:O1" and record["event_ts"] == "1970-01-01T00:00:01Z"
    assert record["link"] is None and "sent_at" not in record
    sent = json.loads(webhook_body(alert(), plain.destinations["h"], None, sent_at_ms=1_500))
    assert sent["sent_at"] == "1970-01-01T00:00:01.500Z"

    am = config.destinations["ops-am"]
    opened = alertmanager_alert(alert(), am, link, now_ms=10_000_000)
    assert opened["labels"] == {"team": "shop", "alertname": "out_of_stock_open_order",
                                "rule": "out_of_stock_open_order", "audience": "cs", "severity": "warning",
                                "dedup_key": "oos:O1", "customer_id": "C1", "order_id": "O1"}
    assert opened["startsAt"] == "1970-01-01T00:00:01.000Z"
    assert opened["endsAt"] == "1970-01-01T02:48:40.000Z"  # now + ends_after_seconds (120)
    assert opened["generatorURL"] == link and opened["annotations"]["title"] == "Order O1 <short>"
    resolved = alertmanager_alert(alert(status="resolved"), am, None, now_ms=10_000_000)
    assert resolved["endsAt"] == "1970-01-01T02:46:40.000Z" and "generatorURL" not in resolved


def test_an_offset_is_committable_only_once_every_destination_finished_it_and_every_earlier_one():
    tracker = OffsetTracker()
    first = tracker.read(0, 10, ["a", "b"])
    second = tracker.read(0, 11, ["a"])
    tracker.read(0, 12, [])  # routed nowhere: nothing to wait for
    tracker.read(1, 5, [])
    assert tracker.committable() == {0: 10, 1: 6}
    tracker.finish(second, "a")
    tracker.finish(first, "a")
    assert tracker.committable()[0] == 10  # b has not delivered 10 yet
    tracker.finish(first, "b")
    assert tracker.committable()[0] == 13
    tracker.drop({0})
    assert tracker.committable() == {1: 6}
