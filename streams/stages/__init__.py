"""Forewarn's detection stages: one per kind of entity, each owning its state, inputs and deadlines.

Every topic a stage reads is co-partitioned with the others (same partition
count, keyed by the stage's entity), so one worker holds all of an entity's
inputs. An input event passes one stage; it is handed to another only when
its key must change (an order's lines to the SKU stage and the SKU's
shortages back; facts one entity tells another, as signals).

=============  ============================================  ==========================================
stage          reads                                         rules
=============  ============================================  ==========================================
sessions       web                                           cart_lost
pages          forewarn-page-signals                         cart_loss_spike, web_error_spike
orders         orders, forewarn-order-shortages,             out_of_stock_open_order (order side),
               forewarn-order-signals                        order_not_visible, late_shipment,
                                                             payment_failed
sku-allocation inventory, forewarn-order-lines               out_of_stock_open_order (SKU side),
                                                             sku_stockout_impact
tickets        support                                       support_sla_risk / _breach
channels       forewarn-channel-signals                      support_backlog
customers      feedback, forewarn-customer-signals           repeat_contact, negative_feedback
categories     forewarn-category-signals                     complaint_spike
sku-returns    returns                                       return_spike (units ordered: sku-allocation)
tasks          forewarn-task-requests, task-updates          outreach tasks
=============  ============================================  ==========================================
"""

from __future__ import annotations

import json
from typing import Callable

from streams import topics
from streams.detectors import backlog, complaints, customers, orders, pages, returns, support, tasks, web
from streams.detectors.lifecycle import Result
from streams.detectors.stock import Reference
from streams.runtime.stage import EntityStage, Stage, StageContext
from streams.settings import Settings
from streams.stages.stock import OrderStage, SkuStage

SIGNAL = topics.SIGNAL_SCHEMA
# Deadlines of stages fed by other stages' signals are judged on the clock as it read this long ago
# (wall time), so a fact already on its way (a ticket answered, an error counted) is read first: the
# clock's knowledge that a partition is caught up is only as fresh as the last fetch of it.
SIGNAL_SETTLE_MS = 500


def build_stages(settings: Settings, reference: Callable[[], Reference]) -> list[Stage]:
    """Every stage, in the order the runtime registers them; `reference` gives the current reference data."""
    limits = settings.thresholds

    def people(_ctx: StageContext | None = None) -> dict:
        return reference().customers

    def catalog(_ctx: StageContext | None = None) -> dict:
        return reference().catalog

    # ------------------------------------------------------------ sessions: cart_lost
    def on_web(ctx, _schema, event):
        session = event["session_id"]
        return session, web.apply_web_event(ctx.get(session), event, limits, detected_at=ctx.wall_ms)

    sessions = EntityStage("sessions", (topics.WEB,), {topics.WEB.schema: "session_id"}, on_web,
                           finished=web.finished)

    # ------------------------------------------------------------ pages: the web team's roll-ups
    def on_page(ctx, _schema, sig):
        return sig["key"], pages.apply_page_signal(ctx.get(sig["key"]), sig, limits, detected_at=ctx.wall_ms)

    page_stage = EntityStage("pages", (topics.PAGE_SIGNALS,), {SIGNAL: "key"}, on_page,
                             next_due=lambda s: pages.next_due(s, limits),
                             due=lambda ctx, s, clock: pages.evaluate(s, clock, limits, detected_at=ctx.wall_ms),
                             settle_ms=SIGNAL_SETTLE_MS)

    # ------------------------------------------------------------ tickets: reply targets
    def on_support(ctx, _schema, event):
        ticket = event["ticket_id"]
        return ticket, support.apply_support_event(ctx.get(ticket), event, limits, people(ctx),
                                                   detected_at=ctx.wall_ms)

    tickets = EntityStage(
        "tickets", (topics.SUPPORT,), {topics.SUPPORT.schema: "ticket_id"}, on_support,
        next_due=lambda s: support.next_due(s, limits, people()),
        due=lambda ctx, s, clock: support.due(s, clock, limits, people(ctx), detected_at=ctx.wall_ms),
        finished=support.finished)

    # ------------------------------------------------------------ channels: backlog
    def on_channel(ctx, _schema, sig):
        return sig["key"], backlog.apply_channel_signal(ctx.get(sig["key"]), sig, limits, detected_at=ctx.wall_ms)

    channels = EntityStage("channels", (topics.CHANNEL_SIGNALS,), {SIGNAL: "key"}, on_channel,
                           next_due=lambda s: backlog.next_due(s, limits),
                           due=lambda ctx, s, clock: backlog.evaluate(s, clock, limits, detected_at=ctx.wall_ms),
                           settle_ms=SIGNAL_SETTLE_MS)

    # ------------------------------------------------------------ customers: repeat contacts, feedback
    def on_customer(ctx, schema, record):
        if schema == topics.FEEDBACK.schema:
            key = record.get("customer_id") or ""
            return key, customers.apply_feedback(ctx.get(key), record, limits, people(ctx), detected_at=ctx.wall_ms)
        return record["key"], customers.apply_customer_signal(ctx.get(record["key"]), record, limits, people(ctx),
                                                              detected_at=ctx.wall_ms)

    customer_stage = EntityStage("customers", (topics.FEEDBACK, topics.CUSTOMER_SIGNALS),
                                 {topics.FEEDBACK.schema: "customer_id", SIGNAL: "key"}, on_customer)

    # ------------------------------------------------------------ categories: complaint spikes
    def on_complaint(ctx, _schema, sig):
        return sig["key"], complaints.apply_complaint(ctx.get(sig["key"]), sig, limits, detected_at=ctx.wall_ms)

    categories = EntityStage("categories", (topics.CATEGORY_SIGNALS,), {SIGNAL: "key"}, on_complaint,
                             next_due=lambda s: complaints.next_due(s, limits),
                             due=lambda ctx, s, clock: complaints.evaluate(s, clock, limits, detected_at=ctx.wall_ms),
                             settle_ms=SIGNAL_SETTLE_MS)

    # ------------------------------------------------------------ sku-returns: return spikes
    # Units ordered per SKU come from the SKU stage's state (same key, same partition).
    def ordered_of(ctx: StageContext, sku: str) -> dict:
        return (ctx.tables[SkuStage.name].get(sku) or {}).get("ordered") or {}

    def on_return(ctx, _schema, event):
        sku = event["sku"]
        return sku, returns.apply_return(ctx.get(sku), event, limits, catalog(ctx), ordered_of(ctx, sku),
                                         detected_at=ctx.wall_ms)

    sku_returns = EntityStage(
        "sku-returns", (topics.RETURNS,), {topics.RETURNS.schema: "sku"}, on_return,
        next_due=lambda s: returns.next_due(s, limits),
        due=lambda ctx, s, clock: returns.evaluate(s, clock, limits, catalog(ctx), ordered_of(ctx, s["sku"]),
                                                   detected_at=ctx.wall_ms))

    # ------------------------------------------------------------ tasks
    def on_task(ctx, schema, record):
        if schema == SIGNAL:
            alert = json.loads(record["data"]["alert"])
            state, version = tasks.apply_alert(ctx.get(record["key"]), alert,
                                               people(ctx).get(alert["customer_id"]) or {}, catalog(ctx))
            return record["key"], Result(state, tasks=[version] if version else [])
        state, version, rejection = tasks.apply_update(ctx.get(record["task_id"]), record, now_ms=ctx.wall_ms)
        return record["task_id"], Result(state, tasks=[version] if version else [],
                                         rejections=[rejection] if rejection else [])

    task_stage = EntityStage("tasks", (topics.TASK_REQUESTS, topics.TASK_UPDATES),
                             {SIGNAL: "key", topics.TASK_UPDATES.schema: "task_id"}, on_task)

    return [OrderStage(settings, reference), SkuStage(settings, reference), sessions, page_stage, tickets, channels, customer_stage,
            categories, sku_returns, task_stage]
