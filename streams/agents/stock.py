"""Agents of the out-of-stock rule: the two co-partitioned stages of streams.detectors.stock.

* ``sku-allocation`` reads ``inventory`` and the internal ``forewarn-order-lines``
  (both keyed by SKU) and keeps one state per SKU.
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
    order_state = worker.table("order-shortages")

    sku_inputs = {topics.INVENTORY.schema: "sku", topics.ORDER_LINES.schema: "sku"}
    order_inputs = {topics.ORDERS.schema: "order_id", topics.ORDER_SHORTAGES.schema: "order_id"}

    @app.agent(worker.channel(topics.INVENTORY, topics.ORDER_LINES), name="sku-allocation")
    async def allocate_stock(stream):
        async for event in stream.events():
            schema, record = worker.decode(event, sku_inputs)
            if schema is None:
                await worker.dead_letter(event, record, "sku-allocation")
                continue
            try:
                worker.observe(event, record["ts"])
                sku = record["sku"]
                ref = worker.reference.reference()
                if schema == topics.INVENTORY.schema:
                    outcome = stock.apply_stock_level(sku_state.get(sku), record, ref, detected_at=wall_ms(),
                                                      rollup_orders=settings.stockout_rollup_orders,
                                                      horizon_ms=settings.reorder_horizon_ms)
                else:
                    outcome = stock.apply_order_line(sku_state.get(sku), record, ref, detected_at=wall_ms(),
                                                     rollup_orders=settings.stockout_rollup_orders,
                                                      horizon_ms=settings.reorder_horizon_ms)
                sku_state[sku] = outcome.state
                for shortage in outcome.shortages:
                    await worker.publish(topics.ORDER_SHORTAGES, shortage)
                for alert in outcome.alerts:
                    await worker.publish(topics.ALERTS, alert)
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
                worker.observe(event, record["ts"])
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
                    await worker.publish(topics.ALERTS, alert)
            except Exception:
                await worker.processing_failed(event, "order-shortages")
