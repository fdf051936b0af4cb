-- Reps' actions on outreach tasks that the worker refused, with the reason (topic task-updates-rejected).
-- Analysts: how often reps hit a task someone else holds, or act on tasks that were already closed.

CREATE TABLE IF NOT EXISTS task_updates_rejected
(
    event_id          String,
    ts                DateTime64(3, 'UTC'),
    task_id           String,
    action            LowCardinality(String),
    assignee          String,
    reason            LowCardinality(String),
    message           String,
    task_status       Nullable(String),
    rejected_at       DateTime64(3, 'UTC'),
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
