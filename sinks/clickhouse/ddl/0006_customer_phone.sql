-- Customers gain an optional phone number (forewarn.Customer: `phone`, null for records written
-- before it existed), shown to reps on their tasks and kept here for analysts.

ALTER TABLE customers ADD COLUMN IF NOT EXISTS phone Nullable(String) AFTER language;

CREATE OR REPLACE VIEW customers_latest AS
SELECT customer_id, argMax(name, ts) AS name, argMax(tier, ts) AS tier,
       argMax(lifetime_value_cents, ts) AS lifetime_value_cents, argMax(email, ts) AS email,
       argMax(preferred_channel, ts) AS preferred_channel, argMax(language, ts) AS language,
       argMax(phone, ts) AS phone, max(ts) AS updated_at
FROM customers
GROUP BY customer_id;
