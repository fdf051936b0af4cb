-- One case per customer (forewarn.OutreachTask version 2).
--
-- A task version is now a version of the customer's case: task_id is the same
-- for all of one customer's cases, case_number tells them apart, and problems
-- lists every problem of the case (each an alert episode with its own status,
-- action, queue and priority). alert_id, rule and context still describe the
-- case's most urgent problem, as they did for version 1's one-alert tasks.
--
-- Rows of version 1 (written before this file, or by a worker of an earlier
-- version) read as case 1 with no problems listed; the views below then take
-- their one problem from alert_id and rule.
ALTER TABLE outreach_tasks
    ADD COLUMN IF NOT EXISTS case_number UInt32 DEFAULT 1 AFTER task_id,
    ADD COLUMN IF NOT EXISTS problems Nested(
        alert_id   String,
        rule       LowCardinality(String),
        status     LowCardinality(String),
        severity   LowCardinality(String),
        title      String,
        summary    String,
        action     String,
        queue      LowCardinality(String),
        priority   LowCardinality(String),
        due_by     DateTime64(3, 'UTC'),
        order_id   Nullable(String),
        ticket_id  Nullable(String),
        sku        Nullable(String),
        resolution Nullable(String),
        added_at   DateTime64(3, 'UTC'),
        updated_at DateTime64(3, 'UTC'),
        details    Map(String, String)
    ) AFTER updated_at;

-- One row per customer's case with its current state: a customer's earlier
-- cases keep their last state here (task_id, case_number).
CREATE OR REPLACE VIEW outreach_cases_latest AS
SELECT
    task_id,
    case_number,
    argMax(customer_id, kafka_offset)   AS customer_id,
    argMax(alert_id, kafka_offset)      AS alert_id,
    argMax(rule, kafka_offset)          AS rule,
    argMax(priority, kafka_offset)      AS priority,
    argMax(queue, kafka_offset)         AS queue,
    argMax(action, kafka_offset)        AS action,
    argMax(due_by, kafka_offset)        AS due_by,
    argMax(status, kafka_offset)        AS status,
    argMax(assignee, kafka_offset)      AS assignee,
    argMax(context, kafka_offset)       AS context,
    argMax(listed_alert_ids, kafka_offset) AS problem_alert_ids,
    argMax(listed_rules, kafka_offset)  AS problem_rules,
    argMax(listed_statuses, kafka_offset) AS problem_statuses,
    length(problem_alert_ids)           AS problem_count,
    countEqual(problem_statuses, 'open') AS open_problems,
    min(created_at)                     AS created_at,
    max(updated_at)                     AS updated_at,
    count()                             AS versions
FROM
(
    -- A version-1 row lists its one alert as the case's one problem.
    SELECT
        *,
        if(empty(problems.alert_id), [alert_id], problems.alert_id)                   AS listed_alert_ids,
        if(empty(problems.rule), [toString(rule)], arrayMap(r -> toString(r), problems.rule)) AS listed_rules,
        if(empty(problems.status), ['open'], arrayMap(s -> toString(s), problems.status))      AS listed_statuses
    FROM outreach_tasks
)
GROUP BY task_id, case_number;

-- Each customer's current case (their latest case_number), as before one row per task_id.
CREATE OR REPLACE VIEW outreach_tasks_latest AS
SELECT
    task_id,
    argMax(case_number, kafka_offset)  AS case_number,
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
    argMax(greatest(length(problems.alert_id), 1), kafka_offset) AS problem_count,
    argMax(created_at, kafka_offset)   AS created_at,
    max(updated_at)                    AS updated_at,
    count()                            AS versions
FROM outreach_tasks
GROUP BY task_id;

-- One row per problem of every case, as the case's latest version lists it
-- (version-1 rows list none: outreach_tasks_latest has their one alert).
CREATE OR REPLACE VIEW case_problems AS
SELECT
    task_id,
    case_number,
    customer_id,
    case_status,
    assignee,
    problem.1  AS alert_id,
    problem.2  AS rule,
    problem.3  AS status,
    problem.4  AS queue,
    problem.5  AS priority,
    problem.6  AS due_by,
    problem.7  AS added_at,
    problem.8  AS resolution,
    problem.9  AS action
FROM
(
    SELECT
        task_id,
        case_number,
        argMax(customer_id, kafka_offset) AS customer_id,
        argMax(status, kafka_offset)      AS case_status,
        argMax(assignee, kafka_offset)    AS assignee,
        argMax(arrayZip(problems.alert_id, problems.rule, problems.status, problems.queue, problems.priority,
                        problems.due_by, problems.added_at, problems.resolution, problems.action),
               kafka_offset)              AS listed
    FROM outreach_tasks
    GROUP BY task_id, case_number
)
ARRAY JOIN listed AS problem;

-- (g) again, now that a problem joins a case: a problem is proactive when it
-- was on a case (the time it joined) before the customer's first
-- ticket_opened at or after its alert opened, or when the customer opened no
-- such ticket. Version-1 rows count their one alert from the task's creation.
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
        SELECT alert_id, [min(added_at)] AS task_created_at
        FROM
        (
            SELECT alert_id, created_at AS added_at
            FROM outreach_tasks
            WHERE empty(problems.alert_id)
            UNION ALL
            SELECT problem_alert_id AS alert_id, problem_added_at AS added_at
            FROM outreach_tasks
            ARRAY JOIN problems.alert_id AS problem_alert_id, problems.added_at AS problem_added_at
        )
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
