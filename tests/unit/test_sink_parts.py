"""The sink's pure parts: container files, the DDL ledger, query output, deduplication tokens."""

from __future__ import annotations

import io
import json

import fastavro
import pytest

from schemas.codec import Codec
from sinks.clickhouse.avro_blocks import ContainerFile, avro_long, coordinates
from sinks.clickhouse.migrate import Migration, MigrationError, apply_migrations, migrations
from sinks.clickhouse.query import QueryResult, format_csv, format_json, format_table, plain
from sinks.clickhouse.sink import _Group

T0 = 1_772_442_900_000

ORDER = {"event_id": "o-1", "ts": T0, "event_type": "placed", "order_id": "O-1", "customer_id": "C-1",
         "lines": [{"sku": "S-1", "qty": 2, "unit_price_cents": 1250}], "promised_ship_by": None, "channel": "web"}


@pytest.mark.parametrize("value", [0, 1, 63, 64, 8191, 8192, 2**31, 2**40 + 5, -1, -64, -65])
def test_avro_long_matches_the_reference_encoder(value):
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", value)
    assert avro_long(value) == out.getvalue()


def test_a_container_file_of_framed_messages_reads_back_as_the_records_with_their_coordinates():
    codec = Codec()
    records = [dict(ORDER, event_id=f"o-{n}", order_id=f"O-{n}", channel=None if n % 2 else "web")
               for n in range(3)]
    messages = [codec.encode("forewarn.OrderEvent", r) for r in records]
    header, entry = codec.writer_schema(messages[0], expected="forewarn.OrderEvent")
    container = ContainerFile(entry, header)
    coords = coordinates("p-orders", "AaIl1v63fPO5lGqaDeheMQ", 3)
    for offset, message in zip((7, 8, 20_000), messages):  # one offset beyond the small-number table
        container.add(coords, offset, message)
    assert len(container) == 3
    # Any Avro reader takes the file: here fastavro's, independent of the code that wrote it.
    read = list(fastavro.reader(io.BytesIO(container.getvalue())))
    assert [r.pop("kafka_offset") for r in read] == [7, 8, 20_000]
    for r in read:
        assert (r.pop("kafka_topic"), r.pop("kafka_topic_id"), r.pop("kafka_partition")) == \
            ("p-orders", "AaIl1v63fPO5lGqaDeheMQ", 3)
        r["ts"] = int(r["ts"].timestamp() * 1000)
    assert read == records


def _migrations(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_ddl_statements_split_at_line_end_semicolons_and_skip_comments(tmp_path):
    text = "-- a table; with a semicolon in a comment\nCREATE TABLE a (x String DEFAULT ';')\nENGINE = Log;\n\n" \
           "CREATE VIEW b AS SELECT 1;\n"
    assert Migration(1, tmp_path / "0001_a.sql", text).statements() == [
        "CREATE TABLE a (x String DEFAULT ';')\nENGINE = Log", "CREATE VIEW b AS SELECT 1"]


def test_ddl_files_must_be_numbered_and_unique(tmp_path):
    _migrations(tmp_path, {"0001_a.sql": "SELECT 1;", "create_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="create_b.sql: DDL files must be named NNNN_name.sql"):
        migrations(tmp_path)
    (tmp_path / "create_b.sql").unlink()
    _migrations(tmp_path, {"0001_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="share a version number"):
        migrations(tmp_path)


def test_the_ledger_applies_each_file_once_and_refuses_an_edited_one(tmp_path):
    import clickhouse_connect

    (tmp_path / "ddl").mkdir()
    ddl = _migrations(tmp_path / "ddl", {"0001_t.sql": "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = MergeTree ORDER BY x;\n"})
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'store'}")
    try:
        assert apply_migrations(client, ddl) == ["0001_t.sql"]
        assert apply_migrations(client, ddl) == []
        (ddl / "0002_v.sql").write_text("CREATE OR REPLACE VIEW v AS SELECT count() AS n FROM t;\n")
        assert apply_migrations(client, ddl) == ["0002_v.sql"]
        (ddl / "0001_t.sql").write_text("CREATE TABLE IF NOT EXISTS t (x UInt16) ENGINE = MergeTree ORDER BY x;\n")
        with pytest.raises(MigrationError, match="0001_t.sql changed after it was applied"):
            apply_migrations(client, ddl)
    finally:
        client.close()


RESULT = QueryResult(["day", "channel", "tickets", "p50", "reasons"],
                     ["Date", "LowCardinality(String)", "UInt64", "Nullable(Float64)", "Array(String)"],
                     [["2026-03-02", "chat", 12, 120.5, ["late", "damaged"]],
                      ["2026-03-02", "email", 3, None, []]])


def test_table_output_aligns_numbers_right_and_counts_rows():
    assert format_table(RESULT).splitlines() == [
        "day         channel  tickets    p50  reasons",
        "----------  -------  -------  -----  -------------------",
        '2026-03-02  chat          12  120.5  ["late", "damaged"]',
        "2026-03-02  email          3   NULL  []",
        "(2 rows)",
    ]


def test_csv_and_json_output():
    assert format_csv(RESULT).splitlines() == [
        "day,channel,tickets,p50,reasons",
        '2026-03-02,chat,12,120.5,"[""late"", ""damaged""]"',
        "2026-03-02,email,3,,[]",
    ]
    assert [json.loads(line) for line in format_json(RESULT).splitlines()] == [
        {"day": "2026-03-02", "channel": "chat", "tickets": 12, "p50": 120.5, "reasons": ["late", "damaged"]},
        {"day": "2026-03-02", "channel": "email", "tickets": 3, "p50": None, "reasons": []},
    ]


def test_query_values_become_plain_json_values():
    import datetime as dt
    import decimal

    stamp = dt.datetime(2026, 3, 2, 9, 15, 0, 250_000, tzinfo=dt.timezone.utc)
    assert plain(stamp) == "2026-03-02 09:15:00.250"
    assert plain(dt.datetime(2026, 3, 2, 9, 15)) == "2026-03-02 09:15:00"
    assert plain(decimal.Decimal("0.250")) == "0.250"
    assert plain({"k": (1, dt.date(2026, 3, 2))}) == {"k": [1, "2026-03-02"]}
    assert plain(float("nan")) == "nan"


class _Message:
    def __init__(self, topic, partition, offset):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o


def _group(offsets, topic_id="id-1"):
    codec = Codec()
    message = codec.encode("forewarn.OrderEvent", ORDER)
    header, entry = codec.writer_schema(message)
    group = _Group("order_events", ContainerFile(entry, header), topic_ids={"orders": topic_id})
    for partition, offset in offsets:
        group.add(_Message("orders", partition, offset), "orders", partition, offset,
                  coordinates("orders", topic_id, partition), message)
    return group


def test_the_deduplication_token_names_the_offsets_and_the_topic_id_only():
    same = _group([(0, 5), (1, 9), (0, 6)])
    assert same.token() == _group([(1, 9), (0, 5), (0, 6)]).token()  # order of arrival does not matter
    assert same.token() != _group([(0, 5), (1, 9)]).token()
    assert same.token() != _group([(0, 5), (1, 9), (0, 6)], topic_id="id-2").token()  # a recreated topic
    assert same.token().startswith("order_events:")


def test_the_query_endpoint_answers_its_token_only_and_reads_only_unless_asked(tmp_path):
    import threading
    import urllib.error
    import urllib.request

    import clickhouse_connect

    from sinks.clickhouse.query import QueryEndpoint, endpoint_path, run_query
    from streams.settings import Settings

    settings = Settings(data_dir=tmp_path)
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'clickhouse'}")
    client.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.command("INSERT INTO t VALUES (1), (2)")
    endpoint = QueryEndpoint(settings, lambda: client, threading.Lock()).start()
    try:
        recorded = json.loads(endpoint_path(settings).read_text())
        assert recorded["url"] == endpoint.url and endpoint_path(settings).stat().st_mode & 0o077 == 0
        # `forewarn sql` beside the sink: through the endpoint, never opening the store itself.
        assert run_query(settings, "SELECT sum(x) AS total FROM t").to_json() == \
            {"columns": ["total"], "types": ["UInt64"], "rows": [[3]]}
        from sinks.clickhouse.query import QueryError, QueryRefused, QuerySyntaxError

        # Refusals and syntax errors keep their kind through the endpoint: `forewarn sql` tells them apart.
        with pytest.raises(QueryRefused, match=r"^refused: INSERT is a write; add --write to run it \("):
            run_query(settings, "INSERT INTO t VALUES (3)")
        with pytest.raises(QueryRefused, match="one statement at a time"):
            run_query(settings, "SELECT 1; DROP TABLE t")
        with pytest.raises(QuerySyntaxError, match=r"^not valid SQL: Syntax error: failed at position 11 \(end of query\)"):
            run_query(settings, "SELECT 1 +")
        with pytest.raises(QueryError, match="UNKNOWN_TABLE"):
            run_query(settings, "SELECT * FROM no_such_table")
        # A refused or failed query leaves the shared session writable for the sink.
        client.command("INSERT INTO t VALUES (3)")
        run_query(settings, "INSERT INTO t VALUES (4)", write=True)
        assert run_query(settings, "SELECT count() FROM t").rows == [[4]]
        wrong = urllib.request.Request(endpoint.url, data=b'{"sql": "SELECT 1"}',
                                       headers={"Authorization": "Bearer guess"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=10)
        assert refused.value.code == 403
    finally:
        endpoint.stop()
        client.close()
    assert not endpoint_path(settings).exists()
