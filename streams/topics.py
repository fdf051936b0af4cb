"""Every topic Forewarn reads or writes, declared once: name, key field, schema, layout.

The unprefixed names here are the contract other systems are written against;
``Settings.topic()`` adds the environment's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    # The record field whose value is the message key (the partitioning key).
    key_field: str
    # Full name of the Avro record in schemas/ that every message on this topic carries.
    schema: str
    kind: str  # "input", "output" or "internal"
    compacted: bool = False
    retention_ms: int = 7 * DAY_MS
    # False for topics whose partition count must not follow FOREWARN_PARTITIONS.
    doc: str = ""

    def config(self) -> dict[str, str]:
        """Topic-level configuration for CreateTopics."""
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


ORDERS = TopicSpec("orders", "order_id", "forewarn.OrderEvent", "input",
                   doc="order lifecycle: placed, cancelled, shipped, delivered, payments")
INVENTORY = TopicSpec("inventory", "sku", "forewarn.StockLevel", "input",
                      doc="absolute stock level per SKU after each change")
CATALOG = TopicSpec("catalog", "sku", "forewarn.CatalogItem", "input", compacted=True,
                    doc="product reference data, latest record per SKU")
CUSTOMERS = TopicSpec("customers", "customer_id", "forewarn.Customer", "input", compacted=True,
                      doc="customer reference data, latest record per customer")
WEB = TopicSpec("web", "session_id", "forewarn.WebEvent", "input",
                doc="website sessions: pages, cart, checkout, errors, order lookups")
SUPPORT = TopicSpec("support", "ticket_id", "forewarn.SupportEvent", "input",
                    doc="support tickets on every channel")
RETURNS = TopicSpec("returns", "sku", "forewarn.ReturnEvent", "input",
                    doc="returned items")
FEEDBACK = TopicSpec("feedback", "customer_id", "forewarn.FeedbackEvent", "input",
                     doc="surveys, reviews and social mentions")

ALERTS = TopicSpec("alerts", "dedup_key", "forewarn.Alert", "output", retention_ms=30 * DAY_MS,
                   doc="alert lifecycle messages: open, updated, resolved")
OUTREACH_TASKS = TopicSpec("outreach-tasks", "task_id", "forewarn.OutreachTask", "output",
                           retention_ms=30 * DAY_MS, doc="outreach task versions for customer-success reps")
# Reps' actions on tasks; an input like the business events, but written by Forewarn's own users.
TASK_UPDATES = TopicSpec("task-updates", "task_id", "forewarn.TaskUpdate", "input",
                         retention_ms=30 * DAY_MS, doc="rep actions on outreach tasks: claim, done, release")
TASK_UPDATES_REJECTED = TopicSpec("task-updates-rejected", "task_id", "forewarn.TaskUpdateRejected", "output",
                                  retention_ms=30 * DAY_MS,
                                  doc="rep actions that could not be applied, with the reason")

# Internal topics: the worker repartitions order lines by SKU so that stock and
# demand for one SKU meet on one partition, then sends each order's per-SKU
# shortage back keyed by order so one worker sees the whole order.
ORDER_LINES = TopicSpec("forewarn-order-lines", "sku", "forewarn.internal.OrderLine", "internal",
                        doc="open/close of each order line, keyed by SKU")
ORDER_SHORTAGES = TopicSpec("forewarn-order-shortages", "order_id", "forewarn.internal.LineShortage",
                            "internal", doc="per-SKU shortage of one order, keyed by order")
# Facts one detection stage hands to another, each keyed by the receiving stage's entity.
SIGNAL_SCHEMA = "forewarn.internal.Signal"
PAGE_SIGNALS = TopicSpec("forewarn-page-signals", "key", SIGNAL_SCHEMA, "internal",
                         doc="per-page facts from web sessions: hits, server errors, lost carts")
ORDER_SIGNALS = TopicSpec("forewarn-order-signals", "key", SIGNAL_SCHEMA, "internal",
                          doc="per-order facts from web sessions: order lookups")
CHANNEL_SIGNALS = TopicSpec("forewarn-channel-signals", "key", SIGNAL_SCHEMA, "internal",
                            doc="per-channel facts from tickets: waiting for a first reply, answered")
CUSTOMER_SIGNALS = TopicSpec("forewarn-customer-signals", "key", SIGNAL_SCHEMA, "internal",
                             doc="per-customer facts from tickets and orders: contacts, orders placed")
CATEGORY_SIGNALS = TopicSpec("forewarn-category-signals", "key", SIGNAL_SCHEMA, "internal",
                             doc="per-category complaints from tickets")
TASK_REQUESTS = TopicSpec("forewarn-task-requests", "key", SIGNAL_SCHEMA, "internal",
                          doc="alert versions that need an outreach task, keyed by task id")
# Progress markers that share forewarn-order-lines with the order lines (see streams.stages.stock).
WATERMARK_SCHEMA = "forewarn.internal.Watermark"
DEAD_LETTERS = TopicSpec("forewarn.dlq", "", "", "internal", retention_ms=30 * DAY_MS,
                         doc="messages that could not be decoded, with headers saying why")

INPUT_TOPICS = (ORDERS, INVENTORY, CATALOG, CUSTOMERS, WEB, SUPPORT, RETURNS, FEEDBACK, TASK_UPDATES)
OUTPUT_TOPICS = (ALERTS, OUTREACH_TASKS, TASK_UPDATES_REJECTED)
INTERNAL_TOPICS = (ORDER_LINES, ORDER_SHORTAGES, PAGE_SIGNALS, ORDER_SIGNALS, CHANNEL_SIGNALS, CUSTOMER_SIGNALS,
                   CATEGORY_SIGNALS, TASK_REQUESTS, DEAD_LETTERS)
ALL_TOPICS = INPUT_TOPICS + OUTPUT_TOPICS + INTERNAL_TOPICS

# What the detection workers' consumer group reads (catalog and customers are read whole by every
# worker outside the group; see streams.reference).
GROUP_INPUTS = (ORDERS, INVENTORY, WEB, SUPPORT, RETURNS, FEEDBACK, TASK_UPDATES, ORDER_LINES, ORDER_SHORTAGES,
                PAGE_SIGNALS, ORDER_SIGNALS, CHANNEL_SIGNALS, CUSTOMER_SIGNALS, CATEGORY_SIGNALS, TASK_REQUESTS)

BY_NAME = {spec.name: spec for spec in ALL_TOPICS}
# Topics `forewarn produce` accepts.
PRODUCIBLE = {spec.name: spec for spec in INPUT_TOPICS}


def spec_for(name: str) -> TopicSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(sorted(BY_NAME))}") from None
