-- Every input event, one row per Kafka message.
--
-- Each table holds one topic. Columns are the record's fields (the .avsc files
-- are the truth) plus the message's Kafka coordinates: after a crash the sink
-- asks which offsets are stored already and skips them, so a batch read again
-- is never stored twice (see sinks/clickhouse/sink.py); the minmax index on
-- kafka_offset keeps that question from reading old parts.
-- Timestamps are DateTime64(3, 'UTC'); enums are LowCardinality(String).

CREATE TABLE IF NOT EXISTS order_events
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    event_type        LowCardinality(String),
    order_id          String,
    customer_id       String,
    lines             Nested(sku String, qty Int32, unit_price_cents Int64),
    promised_ship_by  Nullable(DateTime64(3, 'UTC')),
    channel           LowCardinality(Nullable(String)),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (event_type, ts, order_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per line of every placed order, filled from order_events as it lands.
CREATE TABLE IF NOT EXISTS order_lines
(
    ts                DateTime64(3, 'UTC'),
    order_id          String,
    customer_id       String,
    sku               String,
    qty               Int32,
    unit_price_cents  Int64,
    event_id          String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sku, ts, order_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS order_lines_mv TO order_lines AS
SELECT ts, order_id, customer_id, line.1 AS sku, line.2 AS qty, line.3 AS unit_price_cents, event_id
FROM order_events
ARRAY JOIN arrayZip(lines.sku, lines.qty, lines.unit_price_cents) AS line
WHERE event_type = 'placed';

CREATE TABLE IF NOT EXISTS stock_levels
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    event_type        LowCardinality(String),
    sku               String,
    available         Int32,
    warehouse         LowCardinality(Nullable(String)),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sku, ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every version of every catalog item; catalog_latest (below) has one row per SKU.
CREATE TABLE IF NOT EXISTS catalog_items
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    sku               String,
    name              String,
    category          LowCardinality(String),
    price_cents       Int64,
    active            Bool,
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (sku, ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every version of every customer record; customers_latest (below) has one row per customer.
CREATE TABLE IF NOT EXISTS customers
(
    event_id              String,
    ts                    DateTime64(3, 'UTC'),
    customer_id           String,
    name                  String,
    tier                  LowCardinality(String),
    lifetime_value_cents  Int64,
    email                 Nullable(String),
    preferred_channel     LowCardinality(Nullable(String)),
    language              LowCardinality(Nullable(String)),
    kafka_topic           LowCardinality(String),
    kafka_topic_id        LowCardinality(String),
    kafka_partition       UInt32,
    kafka_offset          UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (customer_id, ts)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS web_events
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    event_type        LowCardinality(String),
    session_id        String,
    page              LowCardinality(String),
    customer_id       Nullable(String),
    sku               Nullable(String),
    qty               Nullable(Int32),
    cart_item_count   Nullable(Int32),
    status_code       Nullable(Int32),
    order_id          Nullable(String),
    found             Nullable(Bool),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (event_type, page, ts)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS support_events
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    event_type        LowCardinality(String),
    ticket_id         String,
    customer_id       String,
    channel           LowCardinality(String),
    category          LowCardinality(Nullable(String)),
    text              Nullable(String),
    order_id          Nullable(String),
    agent_id          Nullable(String),
    language          LowCardinality(Nullable(String)),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (event_type, channel, ts, ticket_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS returns
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    return_id         String,
    order_id          String,
    customer_id       String,
    sku               String,
    qty               Int32,
    reason            LowCardinality(String),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sku, ts)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS feedback
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    event_type        LowCardinality(String),
    customer_id       Nullable(String),
    score             Nullable(Int32),
    text              Nullable(String),
    order_id          Nullable(String),
    ticket_id         Nullable(String),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (event_type, ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- The current record of each catalog item and customer (the compacted topics' view).
CREATE OR REPLACE VIEW catalog_latest AS
SELECT sku, argMax(name, ts) AS name, argMax(category, ts) AS category, argMax(price_cents, ts) AS price_cents,
       argMax(active, ts) AS active, max(ts) AS updated_at
FROM catalog_items
GROUP BY sku;

CREATE OR REPLACE VIEW customers_latest AS
SELECT customer_id, argMax(name, ts) AS name, argMax(tier, ts) AS tier,
       argMax(lifetime_value_cents, ts) AS lifetime_value_cents, argMax(email, ts) AS email,
       argMax(preferred_channel, ts) AS preferred_channel, argMax(language, ts) AS language, max(ts) AS updated_at
FROM customers
GROUP BY customer_id;
