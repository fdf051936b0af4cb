"""Signal bundles: what a stage reads from a bundle is what it would have read signal by signal."""

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import Codec
from streams import topics
from streams.detectors import pages
from streams.detectors.lifecycle import signal
from streams.runtime.bundles import BUNDLE_KIND, Bundler, unbundle
from streams.thresholds import Thresholds

PAGE = topics.PAGE_SIGNALS.name


def page_hit(page: str, n: int, status: int = 200, partition: int = 0) -> dict:
    _, record = signal(PAGE, page, "page_hit", f"e-{partition}-{n}", 1_700_000_000_000 + n * 1_000,
                       status_code=status)
    record["data"]["src"] = f"web:{partition}:{n}"
    return record


def test_signals_for_one_key_travel_as_one_bundle_in_order_and_a_lone_signal_as_itself():
    bundler = Bundler()
    sent = [page_hit("/cart", n) for n in range(5)]
    for record in sent:
        bundler.add(PAGE, record)
    bundler.add(PAGE, page_hit("/home", 9))
    out = dict((record["key"], record) for _, record in bundler.drain())
    assert out["/cart"]["kind"] == BUNDLE_KIND and out["/cart"]["ts"] == sent[-1]["ts"]
    assert unbundle(out["/cart"]) == sent
    assert out["/home"]["kind"] == "page_hit" and unbundle(out["/home"]) == [out["/home"]]
    assert bundler.drain() == []  # handed out once


def test_the_bundler_asks_to_be_sent_once_it_holds_its_maximum():
    bundler = Bundler(max_bundled=3)
    assert [bundler.add(PAGE, page_hit("/p", n)) for n in range(3)] == [False, False, True]
    assert len(unbundle(bundler.drain()[0][1])) == 3 and bundler.count == 0


def test_a_bundle_is_a_valid_signal_record_that_survives_the_codec():
    codec = Codec()
    bundler = Bundler()
    for n in range(3):
        bundler.add(PAGE, page_hit("/checkout", n, status=503))
    [(_, record)] = bundler.drain()
    schema, decoded = codec.decode(codec.encode(topics.SIGNAL_SCHEMA, record, topic=PAGE))
    assert schema == topics.SIGNAL_SCHEMA
    assert unbundle(decoded) == [page_hit("/checkout", n, status=503) for n in range(3)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([200, 200, 500, 503])), min_size=1, max_size=60),
       st.lists(st.integers(1, 20), min_size=1, max_size=10), st.integers(0, 30))
def test_a_page_judges_bundles_as_it_judges_the_same_signals_one_by_one(hits, cuts, resend_from):
    """Any cut into bundles, and bundles sent again after a crash, give the same alerts and state."""
    limits = Thresholds()
    counters = {0: 0, 1: 0, 2: 0}
    records = []
    for partition, status in hits:
        counters[partition] += 1
        records.append(page_hit("/cart", counters[partition], status, partition))

    def apply_all(sequence):
        state, alerts = None, []
        for record in sequence:
            result = pages.apply_page_signal(state, copy.deepcopy(record), limits, detected_at=1)
            state, alerts = result.state, alerts + result.alerts
        return state, alerts

    one_by_one = apply_all(records)
    # The same signals cut into bundles, then the tail sent again (a crash before the commit),
    # cut differently the second time.
    sent, start, i = [], 0, 0
    while start < len(records):
        size = cuts[i % len(cuts)]
        bundler = Bundler()
        for record in records[start:start + size]:
            bundler.add(PAGE, record)
        sent += [record for _, record in bundler.drain()]
        start, i = start + size, i + 1
    again = Bundler()
    for record in records[min(resend_from, len(records) - 1):]:
        again.add(PAGE, record)
    sent += [record for _, record in again.drain()]
    bundled = apply_all([signal for record in sent for signal in unbundle(record)])
    assert bundled == one_by_one
