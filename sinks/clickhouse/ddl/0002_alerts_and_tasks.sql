-- Forewarn's own output: every alert message, every outreach-task version and
-- every rep action, kept in full. The *_latest views give one row per alert or
-- task with its current state, without FINAL.

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id          String,
    rule              LowCardinality(String),
    status            LowCardinality(String),
    severity          LowCardinality(String),
    audience          LowCardinality(String),
    dedup_key         String,
    title             String,
    summary           String,
    customer_id       Nullable(String),
    order_id          Nullable(String),
    sku               Nullable(String),
    ticket_id         Nullable(String),
    session_id        Nullable(String),
    page              Nullable(String),
    category          LowCardinality(Nullable(String)),
    details           Map(String, String),
    evidence          Array(String),
    event_ts          DateTime64(3, 'UTC'),
    detected_at       DateTime64(3, 'UTC'),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (rule, detected_at, alert_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per alert: its latest message, when it opened and when it resolved
-- (NULL while it is not).
-- Messages of one alert share a dedup_key and so a partition: the highest
-- offset is the latest.
CREATE OR REPLACE VIEW alerts_latest AS
SELECT
    alert_id,
    argMax(rule, kafka_offset)         AS rule,
    argMax(status, kafka_offset)       AS status,
    argMax(severity, kafka_offset)     AS severity,
    argMax(audience, kafka_offset)     AS audience,
    any(dedup_key)                     AS dedup_key,
    argMax(title, kafka_offset)        AS title,
    argMax(summary, kafka_offset)      AS summary,
    argMax(customer_id, kafka_offset)  AS customer_id,
    argMax(order_id, kafka_offset)     AS order_id,
    argMax(sku, kafka_offset)          AS sku,
    argMax(ticket_id, kafka_offset)    AS ticket_id,
    argMax(session_id, kafka_offset)   AS session_id,
    argMax(page, kafka_offset)         AS page,
    argMax(category, kafka_offset)     AS category,
    argMax(details, kafka_offset)      AS details,
    argMax(evidence, kafka_offset)     AS evidence,
    minIf(toNullable(event_ts), message_status = 'open')   AS opened_event_ts,
    minIf(toNullable(detected_at), message_status = 'open') AS opened_at,
    maxIf(toNullable(detected_at), message_status = 'resolved') AS resolved_at,
    max(detected_at)                   AS last_detected_at,
    count()                            AS messages
FROM (SELECT *, status AS message_status FROM alerts)
GROUP BY alert_id;

CREATE TABLE IF NOT EXISTS outreach_tasks
(
    task_id           String,
    alert_id          String,
    rule              LowCardinality(String),
    customer_id       String,
    priority          LowCardinality(String),
    queue             LowCardinality(String),
    action            String,
    due_by            DateTime64(3, 'UTC'),
    status            LowCardinality(String),
    assignee          Nullable(String),
    context           Map(String, String),
    created_at        DateTime64(3, 'UTC'),
    updated_at        DateTime64(3, 'UTC'),
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (queue, created_at, task_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per task with its current state (messages of one task share a partition).
CREATE OR REPLACE VIEW outreach_tasks_latest AS
SELECT
    task_id,
    argMax(alert_id, kafka_offset)     AS alert_id,
    argMax(rule, kafka_offset)         AS rule,
    argMax(customer_id, kafka_offset)  AS customer_id,
    argMax(priority, kafka_offset)     AS priority,
    argMax(queue, kafka_offset)        AS queue,
    argMax(action, kafka_offset)       AS action,
    argMax(due_by, kafka_offset)       AS due_by,
    argMax(status, kafka_offset)       AS status,
    argMax(assignee, kafka_offset)     AS assignee,
    argMax(context, kafka_offset)      AS context,
    min(created_at)                    AS created_at,
    max(updated_at)                    AS updated_at,
    count()                            AS versions
FROM outreach_tasks
GROUP BY task_id;

CREATE TABLE IF NOT EXISTS task_updates
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    task_id           String,
    action            LowCardinality(String),
    assignee          String,
    kafka_topic       LowCardinality(String),
    kafka_topic_id    LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      UInt64,
    INDEX kafka_offset_range kafka_offset TYPE minmax GRANULARITY 1,
    inserted_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (task_id, ts)
SETTINGS non_replicated_deduplication_window = 1000;
