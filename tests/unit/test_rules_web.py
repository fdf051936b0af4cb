"""cart_lost (session stage) and the page roll-ups: cart_loss_spike, web_error_spike."""

from streams.detectors import pages, web
from streams.thresholds import Thresholds

LIMITS = Thresholds()
T0 = 1_700_000_000_000
MIN = 60_000


def web_event(n, kind, page, session="s1", ts=None, **extra):
    return {"event_id": f"w{n}", "ts": ts if ts is not None else T0 + n * 1000, "event_type": kind,
            "session_id": session, "page": page, "customer_id": "C-1", **extra}


def play(events, state=None):
    alerts, signals = [], []
    for event in events:
        result = web.apply_web_event(state, event, LIMITS, detected_at=0)
        state = result.state
        alerts += result.alerts
        signals += result.signals
    return state, alerts, signals


def test_cart_emptied_after_moving_page_is_a_lost_cart_naming_skus_and_page():
    state, alerts, signals = play([
        web_event(1, "page_view", "/sale/eth"),
        web_event(2, "cart_add", "/sale/eth", sku="ETH", qty=2),
        web_event(3, "page_view", "/shop/filters"),
        web_event(4, "cart_view", "/cart", cart_item_count=0),
    ])
    assert [a["status"] for a in alerts] == ["open"]
    alert = alerts[0]
    assert alert["rule"] == "cart_lost" and alert["audience"] == "cs"
    assert alert["details"]["lost_skus"] == "ETH"
    assert alert["details"]["last_page"] == "/shop/filters"
    # The way the customer came, oldest first (the same page twice in a row counts once).
    assert alert["details"]["last_pages"] == "/sale/eth > /shop/filters"
    assert alert["session_id"] == "s1" and alert["customer_id"] == "C-1"
    assert "w4" in alert["evidence"]
    losses = [s for s in signals if s[1]["kind"] == "cart_lost"]
    assert len(losses) == 1 and losses[0][1]["key"] == "/shop/filters"


def test_cart_view_matching_the_cart_or_after_checkout_is_not_a_loss():
    _, alerts, _ = play([
        web_event(1, "cart_add", "/p", sku="A", qty=1),
        web_event(2, "cart_add", "/p", sku="B", qty=2),
        web_event(3, "cart_remove", "/p", sku="B", qty=1),
        web_event(4, "cart_view", "/cart", cart_item_count=2),
        web_event(5, "checkout_completed", "/checkout"),
        web_event(6, "cart_view", "/cart", cart_item_count=0),
    ])
    assert alerts == []


def test_one_item_short_fires_and_a_view_of_the_whole_cart_resolves():
    state, alerts, _ = play([
        web_event(1, "cart_add", "/p", sku="A", qty=2),
        web_event(2, "cart_view", "/cart", cart_item_count=1),
    ])
    assert [a["status"] for a in alerts] == ["open"]
    state, more, _ = play([web_event(3, "cart_view", "/cart", cart_item_count=1)], state)
    assert more == []  # the same partial cart again: still lost, nothing new
    _, more, _ = play([web_event(4, "cart_view", "/cart", cart_item_count=2)], state)
    assert [a["status"] for a in more] == ["resolved"]
    assert more[0]["alert_id"] == alerts[0]["alert_id"]
    assert more[0]["details"]["resolution"] == "cart_restored"


def test_an_emptied_cart_put_back_by_the_customer_resolves():
    state, alerts, _ = play([web_event(1, "cart_add", "/p", sku="A", qty=2),
                             web_event(2, "cart_view", "/cart", cart_item_count=0)])
    state, more, _ = play([web_event(3, "cart_add", "/p", sku="A", qty=1)], state)
    assert more == []  # one of the two units back
    _, more, _ = play([web_event(4, "cart_add", "/p", sku="A", qty=1)], state)
    assert [a["status"] for a in more] == ["resolved"] and more[0]["details"]["resolution"] == "items_added_back"


def test_redelivered_event_changes_nothing():
    events = [web_event(1, "cart_add", "/p", sku="A", qty=1), web_event(2, "cart_view", "/cart", cart_item_count=0)]
    state, alerts, _ = play(events)
    _, again, signals = play(events, state)
    assert len(alerts) == 1 and again == [] and signals == []


def test_order_lookup_becomes_an_order_signal():
    _, _, signals = play([web_event(1, "order_lookup", "/account/orders", order_id="O-1", found=False)])
    lookups = [s for s in signals if s[0] == web.ORDER_SIGNALS]
    assert lookups[0][1]["key"] == "O-1" and lookups[0][1]["data"]["found"] == "false"


def page_signal(n, kind, page="/p", ts=None, **data):
    return {"event_id": f"g{n}", "ts": ts if ts is not None else T0 + n * 1000, "kind": kind, "key": page,
            "data": {k: str(v) for k, v in data.items()}}


def feed_pages(signals, state=None):
    alerts = []
    for sig in signals:
        result = pages.apply_page_signal(state, sig, LIMITS, detected_at=0)
        state = result.state
        alerts += result.alerts
    return state, alerts


def test_error_spike_needs_both_count_and_share():
    hits = [page_signal(n, "page_hit", ts=T0 + n * 100) for n in range(300)]
    errors = [page_signal(1000 + n, "page_hit", ts=T0 + 30_000 + n * 100, status_code=503) for n in range(19)]
    _, alerts = feed_pages(hits + errors)
    assert alerts == []  # 19 errors: one under the minimum
    state, alerts = feed_pages(hits + errors + [page_signal(2000, "page_hit", ts=T0 + 40_000, status_code=500)])
    assert [a["status"] for a in alerts] == ["open"]
    assert alerts[0]["rule"] == "web_error_spike" and alerts[0]["audience"] == "it"
    assert alerts[0]["details"]["errors"] == "20"
    # 20 errors among 1000 requests is 2%: under the 5% share.
    many_hits = [page_signal(n, "page_hit", ts=T0 + n * 20) for n in range(1000)]
    _, quiet = feed_pages(many_hits + errors + [page_signal(2000, "page_hit", ts=T0 + 40_000, status_code=500)])
    assert quiet == []


def test_error_spike_updates_then_resolves_when_window_passes():
    errors = [page_signal(n, "page_hit", ts=T0 + n * 100, status_code=500) for n in range(20)]
    state, alerts = feed_pages(errors)
    assert [a["status"] for a in alerts] == ["open"]
    state, more = feed_pages([page_signal(100 + n, "page_hit", ts=T0 + 3000 + n * 10, status_code=500)
                              for n in range(30)], state)
    assert [a["status"] for a in more] == ["updated"]
    due = pages.next_due(state, LIMITS)
    assert due is not None and due > T0 + LIMITS.web_error_window_ms
    result = pages.evaluate(state, T0 + LIMITS.web_error_window_ms + 60_000, LIMITS, detected_at=0)
    assert [a["status"] for a in result.alerts] == ["resolved"]


def test_cart_loss_spike_five_sessions_in_fifteen_minutes():
    four = [page_signal(n, "cart_lost", ts=T0 + n * MIN, session_id=f"s{n}") for n in range(4)]
    state, alerts = feed_pages(four)
    assert alerts == []
    state, alerts = feed_pages([page_signal(9, "cart_lost", ts=T0 + 10 * MIN, session_id="s9")], state)
    assert [(a["rule"], a["status"]) for a in alerts] == [("cart_loss_spike", "open")]
    assert alerts[0]["details"]["sessions"] == "5"
    # Too spread out: the fifth is more than 15 minutes after the first.
    spread = [page_signal(n, "cart_lost", ts=T0 + n * 4 * MIN, session_id=f"s{n}") for n in range(5)]
    _, none = feed_pages(spread)
    assert none == []
    resolved = pages.evaluate(state, T0 + 30 * MIN, LIMITS, detected_at=0)
    assert [a["status"] for a in resolved.alerts] == ["resolved"]


def test_error_spike_found_when_its_errors_arrive_after_later_traffic():
    # Another session partition was read ahead to a later time first.
    state, alerts = feed_pages([page_signal(1, "page_hit", ts=T0 + 9 * MIN)])
    errors = [page_signal(10 + n, "page_hit", ts=T0 + 3 * MIN + n * 1000, status_code=500) for n in reversed(range(20))]
    state, alerts = feed_pages(errors, state)
    assert [(a["rule"], a["status"]) for a in alerts][:1] == [("web_error_spike", "open")]


def test_a_session_is_finished_when_nothing_is_left_to_lose():
    state, _, _ = play([web_event(1, "page_view", "/")])
    assert web.finished(state)
    state, _, _ = play([web_event(2, "cart_add", "/p", sku="A", qty=1)], state)
    assert not web.finished(state)
    state, _, _ = play([web_event(3, "cart_view", "/cart", cart_item_count=0)], state)
    assert not web.finished(state)  # the lost-cart alert is open
    state, _, _ = play([web_event(4, "cart_add", "/p", sku="A", qty=1), web_event(5, "checkout_completed", "/c")],
                       state)
    assert web.finished(state)


def test_cart_lost_updates_on_a_second_loss_and_spike_updates_as_sessions_double():
    state, alerts, _ = play([web_event(1, "cart_add", "/p", sku="A", qty=1),
                             web_event(2, "cart_add", "/p", sku="B", qty=1),
                             web_event(3, "cart_view", "/cart", cart_item_count=1)])
    assert [a["status"] for a in alerts] == ["open"]
    _, more, _ = play([web_event(4, "cart_add", "/p", sku="C", qty=1),
                       web_event(5, "cart_view", "/cart", cart_item_count=0)], state)
    assert [a["status"] for a in more] == ["updated"] and more[0]["details"]["lost_skus"] == "A,B,C"
    losses = [page_signal(n, "cart_lost", ts=T0 + n * 1000, session_id=f"s{n}") for n in range(10)]
    _, spikes = feed_pages(losses)
    assert [a["status"] for a in spikes] == ["open", "updated"]


def test_signals_sent_again_after_a_restart_are_not_counted_twice():
    # A session stage reprocessed partition 2 from offset 40 after a crash: the page sees offsets 40..59 twice.
    first = [page_signal(n, "page_hit", ts=T0 + n * 100, status_code=500, src=f"web:2:{n}") for n in range(40, 59)]
    again = [page_signal(n, "page_hit", ts=T0 + n * 100, status_code=500, src=f"web:2:{n}") for n in range(40, 59)]
    _, alerts = feed_pages(first + again)
    assert alerts == []  # 19 distinct errors: under the minimum of 20
    # The same offset from another partition, or of another kind, is a different event.
    _, alerts = feed_pages(first + [page_signal(99, "page_hit", ts=T0 + 6000, status_code=500, src="web:3:40")])
    assert [a["status"] for a in alerts] == ["open"]
