-- The analysts' objects: one view per recurring question, on top of the
-- tables of 0001 and 0002. Every view reads plain MergeTree tables holding
-- one row per Kafka message, so none needs FINAL. Buckets are Date or
-- DateTime('UTC'), counts UInt64, ratios and durations Float64.
--
-- Views that combine tables never rely on join_use_nulls: what a LEFT JOIN
-- brings is either an array (empty when nothing matched, whatever the
-- setting) or wrapped in ifNull(..., 0), or the lookup is an IN subquery.

-- (a) Complaints per category per hour, with channel.
-- Counted as tickets arrive, so the question stays cheap however long the
-- support history grows. The table holds partial counts until ClickHouse
-- merges its parts; read it only through complaints_hourly, which sums them.
-- The view counts tickets stored after it was created: in a store that
-- already held support events, fill the table once by hand with the same
-- SELECT.
CREATE TABLE IF NOT EXISTS complaints_hourly_counts
(
    hour      DateTime('UTC'),
    category  LowCardinality(String),
    channel   LowCardinality(String),
    tickets   UInt64
)
ENGINE = SummingMergeTree(tickets)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, category, channel)
-- An insert the sink retries with the same deduplication token must not be counted twice here.
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS complaints_hourly_mv TO complaints_hourly_counts AS
SELECT
    toStartOfHour(ts)                         AS hour,
    ifNull(category, 'uncategorized')         AS category,
    channel,
    count()                                   AS tickets
FROM support_events
WHERE event_type = 'ticket_opened'
GROUP BY hour, category, channel;

CREATE OR REPLACE VIEW complaints_hourly AS
SELECT hour, category, channel, sum(tickets) AS tickets
FROM complaints_hourly_counts
GROUP BY hour, category, channel;

-- (b) How long each ticket waited for its first answer.
-- One row per ticket that has a ticket_opened: its first opening, and the
-- first agent reply at or after it (a reply stored before the opening, or a
-- ticket seen only through replies, does not count). Unanswered tickets stay
-- with first_reply_at and wait_seconds NULL so they can be counted.
CREATE OR REPLACE VIEW first_response_times AS
SELECT
    ticket_id,
    channel,
    customer_id,
    opened_at,
    first_reply_at,
    CAST(if(first_reply_at IS NULL, NULL,
            dateDiff('millisecond', opened_at, assumeNotNull(first_reply_at)) / 1000)
         AS Nullable(Float64))                AS wait_seconds
FROM
(
    SELECT
        ticket_id,
        argMinIf(channel, ts, event_type = 'ticket_opened')       AS channel,
        argMinIf(customer_id, ts, event_type = 'ticket_opened')   AS customer_id,
        minIf(ts, event_type = 'ticket_opened')                   AS opened_at,
        arrayFilter(t -> t >= opened_at, groupArrayIf(ts, event_type = 'agent_replied')) AS replies_after_opening,
        if(empty(replies_after_opening), NULL, arrayMin(replies_after_opening)) AS first_reply_at
    FROM support_events
    WHERE event_type IN ('ticket_opened', 'agent_replied')
    GROUP BY ticket_id
    HAVING countIf(event_type = 'ticket_opened') > 0
);

-- First-response time per channel and day (of the ticket's opening).
-- Quantiles are exact and interpolated (quantileExactInclusive, like a
-- spreadsheet's PERCENTILE.INC) over answered tickets only; they are NULL on
-- a day when nothing was answered yet.
CREATE OR REPLACE VIEW first_response_by_channel_daily AS
SELECT
    toDate(opened_at)                                AS day,
    channel,
    count()                                          AS tickets,
    count(first_reply_at)                            AS answered,
    quantileExactInclusive(0.5)(wait_seconds)        AS p50_wait_s,
    quantileExactInclusive(0.9)(wait_seconds)        AS p90_wait_s
FROM first_response_times
GROUP BY day, channel;

-- (c) Returns per SKU per day, why they came back, and the return rate.
-- The rate divides the units returned that day by the units of the SKU
-- ordered in the 30 days up to and including that day (day - 29 .. day).
-- Each return day is expanded into its 30 order days and joined on equal
-- keys, which keeps the join an ordinary hash join. top_reasons: the three
-- most frequent reasons, ties broken alphabetically, so the answer is the
-- same on every run.
CREATE OR REPLACE VIEW returns_daily AS
WITH per_reason AS
(
    SELECT toDate(ts) AS day, sku, reason, count() AS n, sum(qty) AS units
    FROM returns
    GROUP BY day, sku, reason
),
per_day AS
(
    SELECT
        day,
        sku,
        sum(n)                                                   AS returns,
        sum(units)                                               AS returned_units,
        arrayMap(x -> x.2, arraySlice(arraySort(x -> (-x.1, x.2), groupArray((n, reason))), 1, 3)) AS top_reasons
    FROM per_reason
    GROUP BY day, sku
),
ordered_30d AS
(
    SELECT w.day AS day, w.sku AS sku, sum(o.units) AS ordered_units
    FROM
    (
        SELECT day, sku, day - arrayJoin(range(30)) AS order_day
        FROM per_day
    ) AS w
    INNER JOIN
    (
        SELECT toDate(ts) AS order_day, sku, sum(qty) AS units
        FROM order_lines
        WHERE sku IN (SELECT sku FROM returns)
        GROUP BY order_day, sku
    ) AS o ON o.order_day = w.order_day AND o.sku = w.sku
    GROUP BY day, sku
)
SELECT
    d.day                                            AS day,
    d.sku                                            AS sku,
    d.returns                                        AS returns,
    d.returned_units                                 AS returned_units,
    d.top_reasons                                    AS top_reasons,
    ifNull(o.ordered_units, 0)                       AS ordered_units_30d,
    CAST(if(ordered_units_30d = 0, NULL, d.returned_units / ordered_units_30d)
         AS Nullable(Float64))                       AS return_rate
FROM per_day AS d
LEFT JOIN ordered_30d AS o ON o.day = d.day AND o.sku = d.sku;

-- (d) Open orders touched by each stockout.
-- An order alert names every SKU it is short of with a details key
-- short.<sku>; open and updated messages carry the keys, a resolved message
-- does not. The value is text for the rep ("<name>: 2 of 2 units short (0 in
-- stock)"), so units short come from the same SKU's entry in
-- details['lines_json'] (machine-readable), or from the value when it is a
-- bare number. still_open counts orders whose alert is not resolved and
-- whose latest message still names the SKU: an order still waiting for
-- another SKU is no longer open for this one.
CREATE OR REPLACE VIEW stockout_impact AS
SELECT
    sku,
    uniqExact(order_id)                              AS affected_orders,
    max(units_short)                                 AS max_units_short,
    min(detected_at)                                 AS first_alert_at,
    max(detected_at)                                 AS last_alert_at,
    uniqExactIf(order_id, (alert_id, sku) IN
    (
        SELECT alert_id, substring(latest_key, 7)
        FROM alerts_latest
        ARRAY JOIN arrayFilter(k -> startsWith(k, 'short.'), mapKeys(details)) AS latest_key
        WHERE rule = 'out_of_stock_open_order' AND status != 'resolved'
    ))                                               AS still_open
FROM
(
    SELECT
        alert_id,
        order_id,
        detected_at,
        substring(short_key, 7)                      AS sku,
        coalesce(
            toInt64OrNull(details[short_key]),
            JSONExtract(arrayFirst(line -> JSONExtractString(line, 'sku') = substring(short_key, 7),
                                   JSONExtractArrayRaw(details['lines_json'])), 'short', 'Nullable(Int64)'),
            0)                                       AS units_short
    FROM alerts
    ARRAY JOIN arrayFilter(k -> startsWith(k, 'short.'), mapKeys(details)) AS short_key
    WHERE rule = 'out_of_stock_open_order'
)
GROUP BY sku;

-- (e) Where carts get lost: cart_lost alerts opened per hour (of the event
-- that lost the cart) and page. An alert counts once however many messages
-- it has. An alert without a page is counted under 'unknown'.
CREATE OR REPLACE VIEW carts_lost_hourly AS
SELECT
    toStartOfHour(event_ts)                          AS hour,
    ifNull(page, 'unknown')                          AS page,
    uniqExact(alert_id)                              AS carts_lost
FROM alerts
WHERE rule = 'cart_lost' AND status = 'open'
GROUP BY hour, page;

-- (f) Alerts per rule per day, and how fast they were detected.
-- Each alert is taken from its open message (the first by offset if a
-- crash repeated it): its day is the day of the event that opened it, its
-- detection time detected_at minus that event's time. resolved counts the
-- alerts whose latest message is resolved now.
CREATE OR REPLACE VIEW alerts_daily AS
SELECT
    toDate(opened_event_ts)                          AS day,
    rule,
    audience,
    uniqExact(alert_id)                              AS alerts,
    quantileExactInclusive(0.5)(detection_s)         AS p50_detection_s,
    quantileExactInclusive(0.9)(detection_s)         AS p90_detection_s,
    uniqExactIf(alert_id, alert_id IN
        (SELECT alert_id FROM alerts_latest WHERE status = 'resolved')) AS resolved
FROM
(
    SELECT
        alert_id,
        argMin(rule, kafka_offset)                   AS rule,
        argMin(audience, kafka_offset)               AS audience,
        argMin(event_ts, kafka_offset)               AS opened_event_ts,
        dateDiff('millisecond', opened_event_ts, argMin(detected_at, kafka_offset)) / 1000 AS detection_s
    FROM alerts
    WHERE status = 'open'
    GROUP BY alert_id
)
GROUP BY day, rule, audience;

-- (g) How often a problem got a proactive task before the customer called.
-- A problem is an alert that opened naming a customer; its day is the day
-- of its opening event. It is proactive when a task for the alert was
-- created (earliest version) before the customer's first ticket_opened at
-- or after that event, or when the customer opened no such ticket. Tasks
-- and tickets are pre-aggregated into arrays, so an alert without a task or
-- a customer without tickets gets an empty array from the LEFT JOIN
-- whatever join_use_nulls says.
CREATE OR REPLACE VIEW proactive_share_daily AS
SELECT
    day,
    rule,
    count()                                          AS problems,
    countIf(has_task)                                AS with_task,
    countIf(is_proactive)                            AS proactive,
    proactive / problems                             AS proactive_share
FROM
(
    SELECT
        toDate(p.opened_event_ts)                    AS day,
        p.rule                                       AS rule,
        notEmpty(t.task_created_at)                  AS has_task,
        arraySort(arrayFilter(ticket_ts -> ticket_ts >= p.opened_event_ts, c.ticket_opened_at)) AS later_tickets,
        has_task AND (empty(later_tickets) OR t.task_created_at[1] < later_tickets[1]) AS is_proactive
    FROM
    (
        SELECT
            alert_id,
            argMin(rule, kafka_offset)                   AS rule,
            argMin(assumeNotNull(customer_id), kafka_offset) AS problem_customer_id,
            argMin(event_ts, kafka_offset)               AS opened_event_ts
        FROM alerts
        WHERE status = 'open' AND customer_id IS NOT NULL
        GROUP BY alert_id
    ) AS p
    LEFT JOIN
    (
        SELECT alert_id, [min(created_at)] AS task_created_at
        FROM outreach_tasks
        GROUP BY alert_id
    ) AS t ON t.alert_id = p.alert_id
    LEFT JOIN
    (
        SELECT customer_id, groupArray(ts) AS ticket_opened_at
        FROM support_events
        WHERE event_type = 'ticket_opened'
        GROUP BY customer_id
    ) AS c ON c.customer_id = p.problem_customer_id
)
GROUP BY day, rule;
