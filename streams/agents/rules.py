"""Agents of every rule beyond out-of-stock: thin adapters from Faust to streams.detectors.

Stages, each keyed by the entity its state is about, all co-partitioned
(every topic has FOREWARN_PARTITIONS partitions and every worker subscribes
to all, so Faust gives one worker the same partition number of each):

=============  ===============================================  ================================
stage          reads                                            rules
=============  ===============================================  ================================
sessions       web                                              cart_lost
pages          forewarn-page-signals, forewarn-ticks            cart_loss_spike, web_error_spike
order-watch    orders, forewarn-order-signals, forewarn-ticks   order_not_visible, late_shipment,
                                                                payment_failed
tickets        support, forewarn-ticks                          support_sla_risk / _breach
channels       forewarn-channel-signals, forewarn-ticks         support_backlog
customers      feedback, forewarn-customer-signals              repeat_contact, negative_feedback
categories     forewarn-category-signals, forewarn-ticks        complaint_spike
sku-returns    returns, forewarn-ticks                          return_spike (units ordered: the
                                                                sku-allocation table)
tasks          forewarn-task-requests, task-updates             outreach tasks
=============  ===============================================  ================================

Deadline stages keep a DueIndex (streams.agents.deadlines) and act on ticks.
"""

from __future__ import annotations

import json
from typing import Callable

from streams import topics
from streams.agents.deadlines import DueIndex
from streams.app import Worker, wall_ms
from streams.detectors import backlog, complaints, customers, orders, pages, returns, support, tasks, web
from streams.detectors.lifecycle import Result

SIGNAL = topics.SIGNAL_SCHEMA
TICK = topics.TICKS.schema


def register(worker: Worker) -> None:
    limits = worker.settings.thresholds
    # A topic the out-of-stock agents also read: they dead-letter what cannot be used, once, and
    # they alone report its progress to the worker clock.
    shared = {worker.settings.topic(topics.ORDERS.name)}

    def people() -> dict:
        return worker.reference.reference().customers

    def catalog() -> dict:
        return worker.reference.reference().catalog

    def stage(name: str, specs: tuple[topics.TopicSpec, ...], allowed: dict[str, str | None],
              on_record: Callable[[dict, str, dict], tuple[str, Result] | None],
              deadlines: tuple[Callable[[dict], int | None], Callable[[dict, int], Result]] | None = None,
              finished: Callable[[dict], bool] | None = None) -> None:
        """One agent: decode, hand the record to `on_record(table, schema, record)`, publish what it returns.

        `on_record` returns (entity key, Result) or None. With `deadlines`
        (next_due(state), due(state, clock)), the stage keeps a DueIndex and
        acts on ticks. An entity whose state is `finished` is deleted from the
        table, so state does not grow with every session, order and ticket ever seen.
        """

        def store(entity: str, state: dict) -> None:
            if finished is not None and finished(state):
                if entity in table:
                    del table[entity]
            else:
                table[entity] = state
        table = worker.table(name)
        index = DueIndex(worker.table(f"{name}-due")) if deadlines else None
        if index is not None:
            worker.due_indexes.append(index)
            specs = specs + (topics.TICKS,)
            allowed = dict(allowed, **{TICK: None})

        async def on_tick(partition: int, clock: int) -> None:
            next_due, due = deadlines
            planned: dict[str, int | None] = {}
            for entity in index.due_entities(partition, clock):
                state = table.get(entity)
                if state is None:
                    continue
                result = due(state, clock)
                store(entity, result.state)
                await worker.emit(result)
                planned[entity] = next_due(result.state)
            index.settle(partition, clock, planned)

        async def run(stream) -> None:
            async for event in stream.events():
                schema, record = worker.decode(event, allowed)
                if schema is None:
                    if event.message.topic not in shared:
                        await worker.dead_letter(event, record, name)
                    continue
                try:
                    if schema == TICK:
                        await on_tick(event.message.partition, record["clock"])
                        continue
                    # A topic the out-of-stock agents also read is clocked by them alone: its progress
                    # markers must say how far *their* output has got (streams.app.send_order_watermarks).
                    if "ts" in record and event.message.topic not in shared:
                        worker.observe(event, record["ts"])
                    outcome = on_record(table, schema, record)
                    if outcome is None:
                        continue
                    entity, result = outcome
                    # Where each signal comes from, so receivers recognise repeats (lifecycle.already_applied).
                    msg = event.message
                    for _, sig in result.signals:
                        sig["data"]["src"] = f"{msg.topic}:{msg.partition}:{msg.offset}"
                    if result.state is not None:
                        store(entity, result.state)
                        if index is not None:
                            index.schedule(event.message.partition, entity, deadlines[0](result.state))
                    await worker.emit(result)
                except Exception:
                    await worker.processing_failed(event, name)

        run.__name__ = name.replace("-", "_")
        worker.app.agent(worker.channel(*specs), name=name)(run)

    # ------------------------------------------------------------ sessions: cart_lost
    def on_web(table, _schema, event):
        session = event["session_id"]
        return session, web.apply_web_event(table.get(session), event, limits, detected_at=wall_ms())

    stage("sessions", (topics.WEB,), {topics.WEB.schema: "session_id"}, on_web, finished=web.finished)

    # ------------------------------------------------------------ pages: the web team's roll-ups
    def on_page(table, _schema, sig):
        return sig["key"], pages.apply_page_signal(table.get(sig["key"]), sig, limits, detected_at=wall_ms())

    stage("pages", (topics.PAGE_SIGNALS,), {SIGNAL: "key"}, on_page,
          deadlines=(lambda s: pages.next_due(s, limits),
                     lambda s, clock: pages.evaluate(s, clock, limits, detected_at=wall_ms())))

    # ------------------------------------------------------------ order-watch: deadlines and visibility
    def on_order(table, schema, record):
        order_id = record["order_id"] if schema == topics.ORDERS.schema else record["key"]
        state = table.get(order_id)
        if schema == topics.ORDERS.schema:
            return order_id, orders.apply_order_event(state, record, limits, people(), detected_at=wall_ms())
        return order_id, orders.apply_lookup(state, record, limits, people(), detected_at=wall_ms())

    stage("order-watch", (topics.ORDERS, topics.ORDER_SIGNALS),
          {topics.ORDERS.schema: "order_id", SIGNAL: "key"}, on_order,
          deadlines=(lambda s: orders.next_due(s, limits),
                     lambda s, clock: orders.due(s, clock, limits, people(), detected_at=wall_ms())),
          finished=orders.finished)

    # ------------------------------------------------------------ tickets: reply targets
    def on_support(table, _schema, event):
        ticket = event["ticket_id"]
        return ticket, support.apply_support_event(table.get(ticket), event, limits, people(), detected_at=wall_ms())

    stage("tickets", (topics.SUPPORT,), {topics.SUPPORT.schema: "ticket_id"}, on_support,
          deadlines=(lambda s: support.next_due(s, limits, people()),
                     lambda s, clock: support.due(s, clock, limits, people(), detected_at=wall_ms())),
          finished=support.finished)

    # ------------------------------------------------------------ channels: backlog
    def on_channel(table, _schema, sig):
        return sig["key"], backlog.apply_channel_signal(table.get(sig["key"]), sig, limits, detected_at=wall_ms())

    stage("channels", (topics.CHANNEL_SIGNALS,), {SIGNAL: "key"}, on_channel,
          deadlines=(lambda s: backlog.next_due(s, limits),
                     lambda s, clock: backlog.evaluate(s, clock, limits, detected_at=wall_ms())))

    # ------------------------------------------------------------ customers: repeat contacts, feedback
    def on_customer(table, schema, record):
        if schema == topics.FEEDBACK.schema:
            key = record.get("customer_id") or ""
            return key, customers.apply_feedback(table.get(key), record, limits, people(), detected_at=wall_ms())
        return record["key"], customers.apply_customer_signal(table.get(record["key"]), record, limits, people(),
                                                              detected_at=wall_ms())

    stage("customers", (topics.FEEDBACK, topics.CUSTOMER_SIGNALS),
          {topics.FEEDBACK.schema: "customer_id", SIGNAL: "key"}, on_customer)

    # ------------------------------------------------------------ categories: complaint spikes
    def on_complaint(table, _schema, sig):
        return sig["key"], complaints.apply_complaint(table.get(sig["key"]), sig, limits, detected_at=wall_ms())

    stage("categories", (topics.CATEGORY_SIGNALS,), {SIGNAL: "key"}, on_complaint,
          deadlines=(lambda s: complaints.next_due(s, limits),
                     lambda s, clock: complaints.evaluate(s, clock, limits, detected_at=wall_ms())))

    # ------------------------------------------------------------ sku-returns: return spikes
    # Units ordered per SKU come from the out-of-stock SKU stage's state (same key, same partition).
    sku_allocation = worker.table("sku-allocation")

    def ordered_of(sku: str) -> dict:
        return (sku_allocation.get(sku) or {}).get("ordered") or {}

    def on_return(table, _schema, event):
        sku = event["sku"]
        return sku, returns.apply_return(table.get(sku), event, limits, catalog(), ordered_of(sku),
                                         detected_at=wall_ms())

    stage("sku-returns", (topics.RETURNS,), {topics.RETURNS.schema: "sku"}, on_return,
          deadlines=(lambda s: returns.next_due(s, limits),
                     lambda s, clock: returns.evaluate(s, clock, limits, catalog(), ordered_of(s["sku"]),
                                                       detected_at=wall_ms())))

    # ------------------------------------------------------------ tasks
    def on_task(table, schema, record):
        if schema == SIGNAL:
            alert = json.loads(record["data"]["alert"])
            state, version = tasks.apply_alert(table.get(record["key"]), alert,
                                               people().get(alert["customer_id"]) or {})
            return record["key"], Result(state, tasks=[version] if version else [])
        state, version, rejection = tasks.apply_update(table.get(record["task_id"]), record, now_ms=wall_ms())
        return record["task_id"], Result(state, tasks=[version] if version else [],
                                         rejections=[rejection] if rejection else [])

    stage("tasks", (topics.TASK_REQUESTS, topics.TASK_UPDATES), {SIGNAL: "key", topics.TASK_UPDATES.schema: "task_id"},
          on_task)
