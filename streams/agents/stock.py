"""Agents of the out-of-stock rule: the two co-partitioned stages of streams.detectors.stock.

* ``sku-allocation`` reads ``inventory`` and the internal ``forewarn-order-lines``
  (both keyed by SKU) and keeps one state per SKU. It holds each stock level
  and order line until every input has passed its event time, then applies
  them in event-time order: the progress of the order path comes as watermark
  markers on ``forewarn-order-lines``, the progress of ``inventory`` from the
  worker clock.
* ``order-shortages`` reads ``orders`` and the internal ``forewarn-order-shortages``
  (both keyed by order) and keeps one state per order.

Each channel's topics have the same partition count and are subscribed by
every worker, so Faust assigns the same partition numbers of both to one
worker: the two sides of each join always meet.
"""

from __future__ import annotations

from streams import topics
from streams.app import Worker, wall_ms
from streams.detectors import stock


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    sku_state = worker.table("sku-allocation")
    # Per partition of the SKU stage: each order source's watermark, and the SKUs holding events.
    progress = worker.table("sku-progress")
    order_state = worker.table("order-shortages")

    sku_inputs = {topics.INVENTORY.schema: "sku", topics.ORDER_LINES.schema: "sku", topics.WATERMARK_SCHEMA: None}
    order_inputs = {topics.ORDERS.schema: "order_id", topics.ORDER_SHORTAGES.schema: "order_id"}
    inventory_topic = settings.topic(topics.INVENTORY.name)

    async def release(sku: str, state: dict | None, threshold: int | None, dirty: bool) -> bool:
        """Apply the SKU's held events up to `threshold`; True when it holds nothing more.

        The state is stored only if it changed (`dirty`: an event was just held)
        or something was released: every table write is a changelog message.
        """
        if state is None:
            return True
        held_before = len(state.get("pending") or ())
        outcome = stock.release_due(state, threshold, worker.reference.reference(), detected_at=wall_ms(),
                                    rollup_orders=settings.stockout_rollup_orders,
                                    horizon_ms=settings.reorder_horizon_ms)
        if dirty or len(outcome.state.get("pending") or ()) != held_before:
            sku_state[sku] = outcome.state
        for shortage in outcome.shortages:
            await worker.publish(topics.ORDER_SHORTAGES, shortage)
        for alert in outcome.alerts:
            await worker.publish_alert(alert)
        return not outcome.state.get("pending")

    @app.agent(worker.channel(topics.INVENTORY, topics.ORDER_LINES), name="sku-allocation")
    async def allocate_stock(stream):
        async for event in stream.events():
            schema, record = worker.decode(event, sku_inputs)
            if schema is None:
                await worker.dead_letter(event, record, "sku-allocation")
                continue
            try:
                partition = event.message.partition
                key = f"p{partition}"
                here = progress.get(key) or {"watermarks": {}, "holding": []}
                changed = False
                if schema == topics.WATERMARK_SCHEMA:
                    source = record["source"]
                    # Taken as told, also when lower: a source that was caught up (a marker "beyond
                    # any event") and has fallen behind again, or a worker that took the partition over
                    # and reads it from older offsets, holds events back again rather than let order
                    # lines arrive behind the stock levels already applied. Holding more is always safe.
                    if record["watermark"] != here["watermarks"].get(source):
                        here["watermarks"][source] = record["watermark"]
                        changed = True
                    held = {sku: sku_state.get(sku) for sku in here["holding"]}
                else:
                    worker.observe(event, record["ts"])
                    sku = record["sku"]
                    kind = "stock" if schema == topics.INVENTORY.schema else "line"
                    held = {sku: stock.hold(sku_state.get(sku), sku, kind, record)}
                threshold = stock.release_threshold(
                    here["watermarks"], settings.partitions, worker.clock.read_up_to((inventory_topic, partition)))
                for sku, state in held.items():
                    done = await release(sku, state, threshold, dirty=schema != topics.WATERMARK_SCHEMA)
                    if done and sku in here["holding"]:
                        here["holding"].remove(sku)
                        changed = True
                    elif not done and sku not in here["holding"]:
                        here["holding"].append(sku)
                        changed = True
                if changed:
                    progress[key] = here
            except Exception:
                await worker.processing_failed(event, "sku-allocation")

    @app.agent(worker.channel(topics.ORDERS, topics.ORDER_SHORTAGES), name="order-shortages")
    async def alert_on_short_orders(stream):
        async for event in stream.events():
            schema, record = worker.decode(event, order_inputs)
            if schema is None:
                await worker.dead_letter(event, record, "order-shortages")
                continue
            try:
                order_id = record["order_id"]
                ref = worker.reference.reference()
                if schema == topics.ORDERS.schema:
                    outcome = stock.apply_order_event(order_state.get(order_id), record, ref, detected_at=wall_ms(),
                                                      max_alternatives=settings.max_alternatives)
                else:
                    outcome = stock.apply_line_shortage(order_state.get(order_id), record, ref,
                                                        detected_at=wall_ms(),
                                                        max_alternatives=settings.max_alternatives)
                if outcome.state is not None:
                    order_state[order_id] = outcome.state
                for line in outcome.line_events:
                    await worker.publish(topics.ORDER_LINES, line)
                for alert in outcome.alerts:
                    await worker.publish_alert(alert)
                # After the lines are sent: this partition's watermark may now cover this event.
                worker.observe(event, record["ts"])
            except Exception:
                await worker.processing_failed(event, "order-shortages")
