"""Which ClickHouse table each topic lands in: one table per topic, declared once.

The sink reads exactly these topics. A topic's table has a column for every
field of the topic's record (names as in the .avsc) plus the Kafka coordinates
below, and any derived columns the sink works out from the record; the DDL
under ddl/ creates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from streams import topics
from streams.detectors.classify import ticket_category

TABLE_FOR_TOPIC: dict[str, str] = {
    topics.ORDERS.name: "order_events",
    topics.INVENTORY.name: "stock_levels",
    topics.CATALOG.name: "catalog_items",
    topics.CUSTOMERS.name: "customers",
    topics.WEB.name: "web_events",
    topics.SUPPORT.name: "support_events",
    topics.RETURNS.name: "returns",
    topics.FEEDBACK.name: "feedback",
    topics.TASK_UPDATES.name: "task_updates",
    topics.TASK_UPDATES_REJECTED.name: "task_updates_rejected",
    topics.ALERTS.name: "alerts",
    topics.OUTREACH_TASKS.name: "outreach_tasks",
}

SINK_TOPICS = tuple(topics.BY_NAME[name] for name in TABLE_FOR_TOPIC)

# Columns every table has beside the record's fields, written by the sink from the
# message's coordinates. kafka_topic_id tells a recreated topic (offsets start
# again at 0) from the one before it.
KAFKA_FIELDS = (
    {"name": "kafka_topic", "type": "string"},
    {"name": "kafka_topic_id", "type": "string"},
    {"name": "kafka_partition", "type": "int"},
    {"name": "kafka_offset", "type": "long"},
)


@dataclass(frozen=True)
class DerivedColumn:
    """A string column the sink computes in Python from the decoded record and stores beside its fields."""

    name: str
    value_of: Callable[[Mapping], str]


# Derived columns per topic. complaint_category is what the complaint_spike rule counts a ticket
# under, worked out by the very function the rule calls, so the analysts' complaint counts (which
# group by it) and the rule's alerts agree on the same input.
DERIVED_COLUMNS: dict[str, tuple[DerivedColumn, ...]] = {
    topics.SUPPORT.name: (DerivedColumn("complaint_category", ticket_category),),
}
