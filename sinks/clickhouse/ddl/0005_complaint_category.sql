-- One truth for a ticket's complaint category.
--
-- support_events.complaint_category is the category the complaint_spike rule
-- counts a ticket under: the event's category or, without one, its text
-- classified (English, Hindi, Hinglish, Bengali). The sink works it out with
-- the rule's own function (streams.detectors.classify.ticket_category) and
-- stores it with every support event; the hourly complaint counts behind
-- complaints_hourly group ticket_opened rows by it, so the analysts' view and
-- the alerts agree on the same tickets.
--
-- Rows stored before this file, and rows written without the column (a sink
-- of an earlier version), read as the view counted them before: the category,
-- or 'uncategorized' without one. The classifier is Python, not SQL, so they
-- are not classified again; the counts already in complaints_hourly_counts
-- stay as they are.
ALTER TABLE support_events
    ADD COLUMN IF NOT EXISTS complaint_category LowCardinality(String)
        DEFAULT ifNull(category, 'uncategorized') AFTER language;

-- The same view, now reading the stored category. MODIFY QUERY swaps the
-- query in place: no insert is missed or counted twice while it changes, and
-- running it again changes nothing. (It stopped being experimental at the
-- end of 2023; an older server needs the user setting
-- allow_experimental_alter_materialized_view_structure = 1.)
ALTER TABLE complaints_hourly_mv MODIFY QUERY
SELECT
    toStartOfHour(ts)                         AS hour,
    complaint_category                        AS category,
    channel,
    count()                                   AS tickets
FROM support_events
WHERE event_type = 'ticket_opened'
GROUP BY hour, category, channel;
