"""`forewarn web` without a broker: accounts, sign-in cookies, settings, and the JSON the pages read."""

from __future__ import annotations

import pytest

from streams import web
from streams.detectors import tasks
from streams.settings import Settings, SettingsError

T0 = 1_772_442_900_000


def test_a_password_hash_checks_the_password_it_was_made_from_only():
    stored = web.hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert web.check_password("s3cret", stored)
    assert not web.check_password("s3cret ", stored)
    assert not web.check_password("s3cret", "scrypt$bad$hash") and not web.check_password("x", "plain")


def test_the_accounts_file_is_read_and_a_bad_line_is_named(tmp_path):
    good = tmp_path / "accounts"
    good.write_text(f"# reps\n\nasha:{web.hash_password('a')}\n")
    assert list(web.load_accounts(good)) == ["asha"]
    bad = tmp_path / "bad"
    bad.write_text(f"asha:{web.hash_password('a')}\nbilal:letmein\n")
    with pytest.raises(web.AccountsError, match=r"line 2: expected `name:scrypt\$…`"):
        web.load_accounts(bad)
    assert web.load_accounts(None) == {}


def test_a_sign_in_cookie_names_its_rep_until_it_expires_and_cannot_be_forged():
    key = b"k" * 32
    cookie = web.session_cookie(key, "asha", expires_ms=T0 + 60_000)
    assert web.session_name(key, cookie, now_ms=T0) == "asha"
    assert web.session_name(key, cookie, now_ms=T0 + 60_000) is None  # expired
    assert web.session_name(b"j" * 32, cookie, now_ms=T0) is None  # another key
    body, signature = cookie.rsplit(".", 1)
    forged = web.session_cookie(b"x" * 32, "bilal", expires_ms=T0 + 60_000).rsplit(".", 1)[0] + "." + signature
    assert web.session_name(key, forged, now_ms=T0) is None
    assert web.session_name(key, None, now_ms=T0) is None and web.session_name(key, "junk", now_ms=T0) is None


def test_the_signing_key_is_made_once_and_readable_by_its_owner_only(tmp_path):
    settings = Settings(data_dir=tmp_path)
    key = web.signing_key(settings)
    assert web.signing_key(settings) == key and len(key) == 32
    assert (tmp_path / "web" / "secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("raw, message", [
    ("8787", "expected host:port"), ("127.0.0.1:99999", "ports from 1 to 65535"), ("127.0.0.1:", "host:port"),
    ("127.0.0.1:80 80", "host:port")])
def test_a_bad_web_address_stops_naming_the_variable(raw, message):
    with pytest.raises(SettingsError, match=f"FOREWARN_WEB_ADDR={raw!r}: .*{message}"):
        Settings.from_env({"FOREWARN_WEB_ADDR": raw})


def test_web_settings_defaults_and_accounts_file_must_exist(tmp_path):
    settings = Settings.from_env({})
    assert settings.web_addr == ("127.0.0.1", 8787) and settings.web_accounts is None
    assert web.url_of(settings) == "http://127.0.0.1:8787/"
    with pytest.raises(SettingsError, match="FOREWARN_WEB_ACCOUNTS='/nope': .*no such file"):
        Settings.from_env({"FOREWARN_WEB_ACCOUNTS": "/nope"})
    with pytest.raises(SettingsError, match="FOREWARN_WEB_SESSION_MINUTES='0'"):
        Settings.from_env({"FOREWARN_WEB_SESSION_MINUTES": "0"})


def alert(alert_id, rule, status="open", **fields):
    return {"alert_id": alert_id, "rule": rule, "status": status, "severity": "warning", "audience": "ops",
            "dedup_key": f"{rule}:{alert_id}", "title": "t", "summary": "s", "customer_id": fields.get("customer_id"),
            "order_id": None, "sku": fields.get("sku"), "ticket_id": None, "session_id": None,
            "page": fields.get("page"), "category": None, "details": fields.get("details", {}), "evidence": [],
            "event_ts": T0, "detected_at": T0 + fields.get("later", 0)}


def test_a_roll_up_lists_the_alerts_it_sums_up_and_filters_apply():
    alerts = [alert("R", "sku_stockout_impact", sku="ETH", later=5),
              alert("A", "out_of_stock_open_order", details={"short_skus": "ETH,KEN"}),
              alert("B", "out_of_stock_open_order", sku="KEN", status="resolved"),
              alert("S", "cart_loss_spike", page="/shop", later=3), alert("L", "cart_lost", page="/shop")]
    listed = {a["alert_id"]: a for a in web.alerts_json(alerts)}
    assert listed["R"]["members"] == ["A"] and listed["S"]["members"] == ["L"] and "members" not in listed["A"]
    assert [a["alert_id"] for a in web.alerts_json(alerts)][:2] == ["R", "S"]  # newest first
    assert [a["alert_id"] for a in web.alerts_json(alerts, status="resolved")] == ["B"]
    assert {a["alert_id"] for a in web.alerts_json(alerts, rule="out_of_stock_open_order", status="open")} == {"A"}


def test_live_numbers_count_open_alerts_per_rule_and_open_cases_per_queue():
    first = tasks.apply_alert(None, dict(alert("A", "payment_failed", customer_id="C-1"), audience="cs"), {})[1]
    second = tasks.apply_alert(None, dict(alert("B", "cart_lost", customer_id="C-2"), audience="cs"), {})[1]
    done = dict(second, status="done")
    numbers = web.live_numbers([first, done], [alert("A", "payment_failed"), alert("Z", "cart_lost", "resolved")],
                               now_ms=T0 + 90_000)
    assert numbers["open_alerts_per_rule"] == {"payment_failed": 1}
    assert numbers["cases_per_queue"] == {"billing": {"open": 1, "claimed": 0, "oldest_age_s": 90}}


def test_a_case_for_the_api_carries_its_fields_and_the_parsed_view():
    case = tasks.apply_alert(None, dict(alert("A", "cart_lost", customer_id="C-1",
                                              details={"lost_items_json": '{"ETH": 1}'}), audience="cs"),
                             {"name": "Dev Das", "tier": "gold"})[1]
    shown = web.task_json(case)
    for field in ("task_id", "alert_id", "rule", "customer_id", "priority", "queue", "status", "assignee", "due_by",
                  "action", "context", "problems", "case_number"):
        assert field in shown
    assert shown["due_by"].endswith("Z") and shown["view"]["customer"]["name"] == "Dev Das"
    assert shown["view"]["problems"][0]["cart_lost_items"] == {"ETH": 1}


def test_an_address_in_use_stops_the_command_naming_the_variable():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.from_env({"FOREWARN_WEB_ADDR": f"127.0.0.1:{port}"})
        with pytest.raises(SettingsError, match=f"FOREWARN_WEB_ADDR=127.0.0.1:{port}: cannot listen there"):
            web.check_address_free(settings)


@pytest.mark.parametrize("target, kept", [("/tasks", True), ("/tasks?task=T-1", True), ("//evil.example", False),
                                          ("/\\evil.example", False), ("https://evil.example", False),
                                          ("", False), ("/a\nb", False)])
def test_after_sign_in_only_a_path_on_this_site_is_followed(target, kept):
    assert web._local_path(target) == (target if kept else None)


def test_a_sign_in_ends_with_its_account_or_a_new_password_and_odd_cookies_are_refused():
    key = b"k" * 32
    stored = web.hash_password("old")
    cookie = web.session_cookie(key, "asha", T0 + 60_000, stored)
    assert web.session_name(key, cookie, T0, {"asha": stored}) == "asha"
    assert web.session_name(key, cookie, T0, {"bilal": stored}) is None  # asha's account was removed
    assert web.session_name(key, cookie, T0, {"asha": web.hash_password("new")}) is None  # her password changed
    assert web.session_name(key, "ümlaut.ßig", T0, {"asha": stored}) is None


def test_a_damaged_signing_key_stops_the_page(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "secret").write_bytes(b"short")
    with pytest.raises(SettingsError, match="signing key .* is damaged"):
        web.signing_key(Settings(data_dir=tmp_path))
