"""One truth for a ticket's complaint category: the complaint_spike rule and the analysts' view agree.

An unlabelled, multilingual burst of tickets (English, Hindi in Devanagari,
Hinglish, Bengali) goes both ways a deployment sends it: through the rule's
pure detectors (the ticket stage's complaint signals into complaint_spike),
and through the ClickHouse sink into a chDB store, where complaints_hourly
counts it. Both must count the same tickets under the same categories in the
same hours and channels, and the category the rule alerts on must be the
view's top category of the hour.

Burst (UTC, 2026-03-02), each ticket opened once; replies are not complaints:

  08:00 hour  delivery 2 (English), payment 1
  09:00 hour  delivery 14: 13 unlabelled in four languages, 1 with an empty category
              payment 4: 3 unlabelled, 1 labelled "payment" whose text is about delivery
              returns 2, product_quality 2, website 1, account 1, other 2 (no keyword, no text)
              agent and customer replies whose own text is about refunds and couriers
"""

from __future__ import annotations

import io
import zlib
from collections import Counter
from datetime import datetime, timezone

import fastavro
import pytest

from schemas.codec import Codec
from sinks.clickhouse.avro_blocks import ContainerFile, coordinates, derived_values
from sinks.clickhouse.migrate import DDL_DIR, apply_migrations, migrations
from sinks.clickhouse.sink import ClickHouseSink, SinkLimits, Store
from streams import topics
from streams.detectors import complaints, support
from streams.detectors.classify import classify, ticket_category
from streams.settings import Settings

SUPPORT_EVENT = topics.SUPPORT.schema
PARTITIONS = 3
TOPIC_ID = "b25lLXRydXRoLXN1cHBvcnQ"
H8 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
H9 = H8 + 3_600_000
MINUTE = 60_000
DETECTED_AT = H9 + 2 * 3_600_000

# (hour, minute, channel, category field, language, text) of every ticket_opened, in reading order.
OPENINGS = [
    (H8, 5, "chat", None, "en", "My order still hasn't arrived, where is my order?"),
    (H8, 20, "email", None, "en", "The courier never came and the parcel is not here"),
    (H8, 40, "chat", None, "en", "I was charged twice for one order"),
    # The delivery burst: no category field, four languages and scripts.
    (H9, 1, "chat", None, "en", "My order still hasn't arrived, where is my order?"),
    (H9, 2, "email", None, "en", "Delivery is three days late now"),
    (H9, 4, "phone", None, "hi", "मेरा ऑर्डर अभी तक नहीं आया"),
    (H9, 6, "chat", None, "hi", "पार्सल कब आएगा? बहुत देरी हो गई"),
    (H9, 9, "social", None, "hi", "कूरियर वाला अब तक नहीं पहुंचा"),
    (H9, 11, "chat", None, "en", "bhai mera order abhi tak nahi aaya"),
    (H9, 13, "sms", None, "en", "parcel kab aayega? 5 din ho gaye"),
    (H9, 15, "chat", None, "hi", "order abhi tak pahuncha nahi, bahut der se wait kar raha hoon"),
    (H9, 18, "chat", None, "bn", "আমার অর্ডার এখনো আসেনি"),
    (H9, 21, "email", None, "bn", "পার্সেল কবে আসবে?"),
    (H9, 24, "phone", None, "bn", "ডেলিভারি তিন দিন দেরি হয়ে গেল"),
    (H9, 27, "chat", None, None, "Mera order kab milega? tracking mein kuch nahi dikh raha"),
    (H9, 30, "email", None, "en", "The courier never came and the parcel is not here"),
    (H9, 33, "chat", "", "bn", "আমার অর্ডার এখনো আসেনি"),  # an empty category is no category
    # Other complaints in the same hour.
    (H9, 3, "chat", None, "en", "I was charged twice for one order"),
    (H9, 8, "phone", None, "hi", "पैसे कट गए लेकिन ऑर्डर नहीं हुआ"),
    (H9, 12, "chat", None, "bn", "টাকা কেটে নিয়েছে কিন্তু অর্ডার হয়নি"),
    (H9, 14, "email", "payment", "en", "My parcel never arrived"),  # the given category wins over the text
    (H9, 17, "chat", None, "en", "refund chahiye, product wapas lena hai"),
    (H9, 19, "phone", None, "hi", "मुझे रिफंड चाहिए"),
    (H9, 23, "email", None, "en", "The jar arrived broken and the coffee tastes stale"),
    (H9, 26, "chat", None, "en", "packet phata hua tha, coffee kharab hai"),
    (H9, 29, "chat", None, "bn", "ওয়েবসাইটে চেকআউট পেজ লোড হচ্ছে না"),
    (H9, 31, "email", None, "en", "I cannot log in, the password reset link never comes"),
    (H9, 35, "chat", None, "en", "Hello?"),
    (H9, 36, "phone", None, None, None),
]

# Replies to some of the tickets above: (ticket number, minutes after its opening, type, text).
REPLIES = [
    (3, 5, "agent_replied", "Sorry about that, we have issued your refund."),
    (4, 10, "customer_replied", "Still waiting for the courier"),
    (17, 4, "agent_replied", "आपका रिफंड प्रोसेस हो गया है"),
    (21, 2, "agent_replied", "Your replacement ships today."),
    (21, 30, "ticket_resolved", None),
]

EXPECTED_09 = {"delivery": 14, "payment": 4, "returns": 2, "product_quality": 2, "website": 1, "account": 1,
               "other": 2}


def burst() -> list[dict]:
    """Every support event of the burst, in the order they are read."""
    events = []
    for n, (hour, minute, channel, category, language, text) in enumerate(OPENINGS):
        events.append({"event_id": f"open-{n}", "ts": hour + minute * MINUTE, "event_type": "ticket_opened",
                       "ticket_id": f"T-{n}", "customer_id": f"C-{n % 7}", "channel": channel,
                       "category": category, "text": text, "order_id": None, "agent_id": None,
                       "language": language})
    for n, (ticket, after, kind, text) in enumerate(REPLIES):
        opened = events[ticket]
        events.append(dict(opened, event_id=f"reply-{n}", ts=opened["ts"] + after * MINUTE, event_type=kind,
                           category=None, text=text, language=None,
                           agent_id="agent-3" if kind != "customer_replied" else None))
    return events


def hour_of(ms: int) -> datetime:
    """The naive UTC datetime clickhouse-connect returns for a UTC column."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(tzinfo=None)


class Message:
    """The parts of a confluent_kafka.Message the sink reads."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._key, self._value = topic, partition, offset, key, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


class DeadLetterLog:
    """Stands in for the sink's dead-letter producer: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []

    def send(self, message, reason: str, error_class: str, text: str) -> None:
        self.sent.append((message.value(), message.offset(), reason))

    def confirm(self, timeout: float = 30.0) -> None:
        pass


def messages_of(settings: Settings, values: list[tuple[str, bytes]]) -> list[Message]:
    """Support messages keyed by ticket, partitioned by key, offsets rising per partition."""
    topic = settings.topic(topics.SUPPORT.name)
    next_offset: dict[int, int] = {}
    out = []
    for ticket_id, value in values:
        partition = zlib.crc32(ticket_id.encode()) % PARTITIONS
        offset = next_offset.get(partition, 0)
        next_offset[partition] = offset + 1
        out.append(Message(topic, partition, offset, ticket_id.encode(), value))
    return out


def sink_into(client, settings: Settings, messages: list[Message]) -> tuple[ClickHouseSink, DeadLetterLog]:
    """Write `messages` through the ClickHouse sink (its store migrated on first use) and flush."""
    dead = DeadLetterLog()
    sink = ClickHouseSink(Store(lambda: client), Codec(), dead, settings, SinkLimits())
    sink.topic_ids[settings.topic(topics.SUPPORT.name)] = TOPIC_ID
    for m in messages:
        sink.add(m)
    assert sink.flush(), "the sink committed nothing"
    return sink, dead


def run_rule(records: list[dict], settings: Settings) -> tuple[dict, list[dict], dict]:
    """The ticket stage and complaint_spike as the worker runs them: states per ticket and category.

    Returns the category states, the alerts and the category each ticket was signalled under.
    """
    limits = settings.thresholds
    tickets: dict[str, dict] = {}
    categories: dict[str, dict] = {}
    alerts: list[dict] = []
    signalled: dict[str, str] = {}
    for record in records:
        result = support.apply_support_event(tickets.get(record["ticket_id"]), record, limits, {},
                                             detected_at=DETECTED_AT)
        tickets[record["ticket_id"]] = result.state
        for topic, sig in result.signals:
            if topic != support.CATEGORY_SIGNALS:
                continue
            signalled[sig["data"]["ticket_id"]] = sig["key"]
            applied = complaints.apply_complaint(categories.get(sig["key"]), sig, limits, detected_at=DETECTED_AT)
            categories[sig["key"]] = applied.state
            alerts += applied.alerts
    return categories, alerts, signalled


def rule_counts(categories: dict[str, dict]) -> dict[tuple, int]:
    """(hour, category, channel) -> tickets, as the rule's windows counted them."""
    counts = {}
    for category, state in categories.items():
        for window, per_channel in state["channels"].items():
            for channel, n in per_channel.items():
                counts[(hour_of(int(window)), category, channel)] = n
        # The per-channel split adds up to the window's count.
        for window, n in state["counts"].items():
            assert sum(state["channels"][window].values()) == n
    return counts


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory):
    """One chDB engine for the module (a process opens one chDB path); each test takes its own database."""
    import clickhouse_connect

    path = tmp_path_factory.mktemp("one_truth")
    keeper = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        yield path
    finally:
        keeper.close()


def fresh_store(chdb_path, database: str):
    """A client on a new, empty database of the module's engine."""
    import clickhouse_connect

    creator = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}")
    try:
        creator.command(f"CREATE DATABASE {database}")
    finally:
        creator.close()
    return clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}", database=database)


@pytest.fixture(scope="module")
def both_ways(chdb_path):
    """The burst through the rule and through the sink into a fresh store."""
    settings = Settings(topic_prefix="one-truth-")
    codec = Codec()
    events = burst()
    values = [(e["ticket_id"], codec.encode(SUPPORT_EVENT, e)) for e in events]
    # The worker hands the stages what the codec decodes from the same messages the sink reads.
    records = [codec.decode(value, expected=SUPPORT_EVENT)[1] for _, value in values]
    categories, alerts, signalled = run_rule(records, settings)

    client = fresh_store(chdb_path, "burst")
    try:
        sink, dead = sink_into(client, settings, messages_of(settings, values))
        assert dead.sent == [] and sink.stats.stored_rows == len(events)
        yield {"client": client, "categories": categories, "alerts": alerts, "signalled": signalled,
               "events": events}
    finally:
        client.close()


def view_counts(client) -> dict[tuple, int]:
    return {(hour, category, channel): tickets for hour, category, channel, tickets in
            client.query("SELECT hour, category, channel, tickets FROM complaints_hourly").result_rows}


def test_the_burst_is_what_the_test_says():
    # Guards the workload itself: the texts classify as the module docstring says.
    per_hour = Counter((hour, ticket_category({"category": category, "text": text}))
                       for hour, _, _, category, _, text in OPENINGS)
    assert {category: n for (hour, category), n in per_hour.items() if hour == H9} == EXPECTED_09
    assert {category: n for (hour, category), n in per_hour.items() if hour == H8} == {"delivery": 2, "payment": 1}
    assert classify("My parcel never arrived") == "delivery"  # the labelled payment ticket's text


def test_the_view_counts_what_the_rule_counts_per_hour_category_and_channel(both_ways):
    rule = rule_counts(both_ways["categories"])
    view = view_counts(both_ways["client"])
    assert view == rule
    per_category_09 = Counter()
    for (hour, category, _), n in view.items():
        if hour == hour_of(H9):
            per_category_09[category] += n
    assert per_category_09 == EXPECTED_09
    assert "uncategorized" not in {category for _, category, _ in view}


def test_the_rule_alerts_on_the_views_top_category_of_the_hour(both_ways):
    [opened] = [a for a in both_ways["alerts"] if a["status"] == "open"]
    assert opened["rule"] == complaints.RULE
    top = both_ways["client"].query(
        "SELECT hour, category, sum(tickets) AS n FROM complaints_hourly GROUP BY hour, category "
        "ORDER BY n DESC, category LIMIT 1").result_rows
    assert top == [(hour_of(H9), opened["category"], 14)]
    assert opened["category"] == "delivery"
    assert opened["details"]["window_start"] == "2026-03-02T09:00:00Z"


def test_every_opening_row_stores_the_category_the_rule_signalled(both_ways):
    stored = dict(both_ways["client"].query(
        "SELECT ticket_id, complaint_category FROM support_events WHERE event_type = 'ticket_opened'").result_rows)
    assert stored == both_ways["signalled"]
    assert stored["T-20"] == "payment"  # labelled payment, text about delivery
    assert stored["T-16"] == "delivery"  # empty category, Bengali text
    assert stored["T-28"] == "other"  # no category, no text


def test_every_support_event_carries_its_own_category(both_ways):
    # Replies get the same function's answer for their own fields; the view counts openings only.
    stored = dict(both_ways["client"].query(
        "SELECT event_id, complaint_category FROM support_events").result_rows)
    assert stored == {e["event_id"]: ticket_category(e) for e in both_ways["events"]}
    assert stored["reply-0"] == "returns" and stored["reply-4"] == "other"


def test_a_store_from_before_the_migration_upgrades_in_place(tmp_path, chdb_path):
    older = tmp_path / "ddl-0004"
    older.mkdir()
    for migration in migrations(DDL_DIR):
        if migration.version <= 4:
            (older / migration.path.name).write_text(migration.text)
    settings = Settings(topic_prefix="upgrade-")
    client = fresh_store(chdb_path, "upgrade")
    try:
        apply_migrations(client, older)
        # Stored by a sink from before: an unlabelled delivery ticket and a labelled one.
        kafka = [settings.topic(topics.SUPPORT.name), TOPIC_ID, 0]
        client.insert("support_events", [
            ["old-1", hour_of(H8 + MINUTE), "ticket_opened", "T-old-1", "C-1", "chat", None,
             "My order still hasn't arrived", *kafka, 100],
            ["old-2", hour_of(H8 + 2 * MINUTE), "ticket_opened", "T-old-2", "C-2", "chat", "stock", None, *kafka, 101],
        ], column_names=["event_id", "ts", "event_type", "ticket_id", "customer_id", "channel", "category", "text",
                         "kafka_topic", "kafka_topic_id", "kafka_partition", "kafka_offset"])

        assert "0005_complaint_category.sql" in apply_migrations(client)
        # Rows from before keep what the view counted them as; they are not classified again.
        assert client.query("SELECT event_id, complaint_category FROM support_events ORDER BY event_id").result_rows \
            == [("old-1", "uncategorized"), ("old-2", "stock")]

        codec = Codec()
        new = [e for e in burst() if e["ts"] < H9]
        sink_into(client, settings, messages_of(settings, [(e["ticket_id"], codec.encode(SUPPORT_EVENT, e))
                                                            for e in new]))
        assert view_counts(client) == {
            (hour_of(H8), "uncategorized", "chat"): 1,  # old-1, from before
            (hour_of(H8), "stock", "chat"): 1,  # old-2, from before
            (hour_of(H8), "delivery", "chat"): 1,  # T-0
            (hour_of(H8), "delivery", "email"): 1,  # T-1
            (hour_of(H8), "payment", "chat"): 1,  # T-2
        }
        # Applied again, file or statement by statement, nothing changes.
        assert apply_migrations(client) == []
        [upgrade] = [m for m in migrations(DDL_DIR) if m.version == 5]
        for statement in upgrade.statements():
            client.command(statement)
        assert sum(view_counts(client).values()) == 5
    finally:
        client.close()


def test_a_support_event_that_does_not_decode_is_dead_lettered_and_its_neighbours_land(chdb_path):
    settings = Settings(topic_prefix="poison-")
    codec = Codec()
    events = burst()[:4]
    values = [(e["ticket_id"], codec.encode(SUPPORT_EVENT, e)) for e in events]
    cut_off = values[1][1][:-4]
    values[1] = (values[1][0], cut_off)
    # ClickHouse alone would store this one as its record; the rule's decoder refuses it, so does the sink.
    padded = values[2][1] + b"\x00\x00"
    values[2] = (values[2][0], padded)
    client = fresh_store(chdb_path, "poison")
    try:
        sink, dead = sink_into(client, settings, messages_of(settings, values))
        assert sorted((value, reason) for value, _, reason in dead.sent) == sorted([(cut_off, "body"),
                                                                                    (padded, "body")])
        assert client.query("SELECT event_id, complaint_category FROM support_events ORDER BY event_id").result_rows \
            == [("open-0", "delivery"), ("open-3", "delivery")]
        assert sink.stats.dead_letters == 2
    finally:
        client.close()


def test_a_container_file_with_derived_fields_reads_back_as_the_records_with_them():
    codec = Codec()
    records = burst()[:3]
    messages = [codec.encode(SUPPORT_EVENT, r) for r in records]
    header, entry = codec.writer_schema(messages[0], expected=SUPPORT_EVENT)
    container = ContainerFile(entry, header, ("complaint_category",))
    coords = coordinates("p-support", TOPIC_ID, 1)
    for offset, (record, message) in enumerate(zip(records, messages)):
        container.add(coords, offset, message, derived_values([ticket_category(record)]))
    read = list(fastavro.reader(io.BytesIO(container.getvalue())))
    assert [r["complaint_category"] for r in read] == ["delivery", "delivery", "payment"]
    for r, record in zip(read, records):
        assert {k: v for k, v in r.items() if k in record and k != "ts"} == {k: v for k, v in record.items()
                                                                           if k != "ts"}
