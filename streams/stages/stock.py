"""The order and SKU stages: the out-of-stock join, and everything else about an order.

* ``orders`` owns one state per order: the out-of-stock side (``stock``:
  the order's lines and the shortages the SKU stage told it) and the watch
  side (``watch``: visibility, shipping and payment deadlines). It reads
  ``orders``, the shortages coming back keyed by order, and order lookups.
  It sends each order's lines, keyed by SKU, to the SKU stage, and tells the
  SKU stage how far each orders partition has got (progress markers).
* ``sku-allocation`` owns one state per SKU: the stock level meets the open
  order lines, allocated oldest order first. It holds stock levels and order
  lines until every input has passed their event time, then applies them in
  event-time order; the orders side's progress comes as markers on
  ``forewarn-order-lines``, the inventory's from the worker clock.

  A busy SKU has thousands of open lines. Its state is therefore kept in two
  tables: the SKU's own record (stock levels, held events, the roll-up, units
  ordered per day) in ``sku-allocation``, and one record per order of the SKU
  (its line and the shortage last told to it) in ``sku-lines``. A change
  logs only the orders it touched, no record grows with the SKU's demand (a
  record must stay under the broker's limit of about 1 MB), and in memory
  each SKU's lines stay decoded between events (``SkuStage._views``), read
  from ``sku-lines`` once per partition after each rebalance.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from streams import topics
from streams.detectors import orders, stock
from streams.runtime.stage import Stage, StageContext
from streams.settings import Settings

# An unchanged progress marker is repeated this often: the SKU stage keeps the last one in its
# state, and an idle stack should not write a stream of repeated markers.
MARKER_REFRESH_MS = 60_000


class OrderStage(Stage):
    name = "orders"
    inputs = (topics.ORDERS, topics.ORDER_SHORTAGES, topics.ORDER_SIGNALS)
    keys = {topics.ORDERS.schema: "order_id", topics.ORDER_SHORTAGES.schema: "order_id",
            topics.SIGNAL_SCHEMA: "key"}

    def __init__(self, settings: Settings, reference: Callable[[], stock.Reference]) -> None:
        self.settings = settings
        self.limits = settings.thresholds
        self.reference = reference
        # orders partition -> (watermark, wall ms) of the last marker sent for it
        self.markers_sent: dict[int, tuple[int, int]] = {}

    @staticmethod
    def finished(entity: dict) -> bool:
        # The stock side is kept: a shortage read late for a closed order still gets its episode.
        return entity["stock"] is None and (entity["watch"] is None or orders.finished(entity["watch"]))

    def next_due(self, entity: dict) -> int | None:
        return None if entity["watch"] is None else orders.next_due(entity["watch"], self.limits)

    def apply(self, ctx: StageContext, schema: str, record: dict) -> None:
        ref = self.reference()
        order_id = record["key"] if schema == topics.SIGNAL_SCHEMA else record["order_id"]
        entity = ctx.get(order_id) or {"stock": None, "watch": None}
        if schema == topics.ORDERS.schema:
            outcome = stock.apply_order_event(entity["stock"], record, ref, detected_at=ctx.wall_ms,
                                              max_alternatives=self.settings.max_alternatives)
            entity["stock"] = outcome.state
            for line in outcome.line_events:
                ctx.publish(topics.ORDER_LINES, line)
            for alert in outcome.alerts:
                ctx.publish_alert(alert)
            result = orders.apply_order_event(entity["watch"], record, self.limits, ref.customers,
                                              detected_at=ctx.wall_ms)
        elif schema == topics.ORDER_SHORTAGES.schema:
            outcome = stock.apply_line_shortage(entity["stock"], record, ref, detected_at=ctx.wall_ms,
                                                max_alternatives=self.settings.max_alternatives)
            entity["stock"] = outcome.state
            for alert in outcome.alerts:
                ctx.publish_alert(alert)
            ctx.store(order_id, entity, self.finished)
            return
        else:
            result = orders.apply_lookup(entity["watch"], record, self.limits, ref.customers, detected_at=ctx.wall_ms)
        for _, sig in result.signals:
            sig["data"]["src"] = ctx.src
        entity["watch"] = result.state
        ctx.store(order_id, entity, self.finished)
        ctx.emit(result)

    def fire(self, ctx: StageContext, key: str, entity: Any, clock: int) -> None:
        result = orders.due(entity["watch"], clock, self.limits, self.reference().customers, detected_at=ctx.wall_ms)
        entity["watch"] = result.state
        ctx.store(key, entity, self.finished)
        ctx.emit(result)

    def on_ready(self, partitions: frozenset[int]) -> None:
        # A partition that comes back after a rebalance gets a marker at once.
        for partition in set(self.markers_sent) - set(partitions):
            del self.markers_sent[partition]

    def tick(self, ctx: StageContext) -> None:
        """Tell every SKU-stage partition how far this orders partition has got, when that changed."""
        watermark = ctx.watermark_of(topics.ORDERS)
        if watermark is None:
            return
        last = self.markers_sent.get(ctx.partition)
        if last is not None and last[0] == watermark and ctx.wall_ms - last[1] < MARKER_REFRESH_MS:
            return
        self.markers_sent[ctx.partition] = (watermark, ctx.wall_ms)
        marker = {"source": f"{topics.ORDERS.name}:{ctx.partition}", "watermark": watermark, "sent_at": ctx.wall_ms}
        for partition in range(self.settings.partitions):
            ctx.send_to_partition(topics.ORDER_LINES, topics.WATERMARK_SCHEMA, marker, partition)


class _Touched(stock._Tallied):
    """A SKU's ``lines`` or ``emitted`` map that remembers which orders were set or removed since last logged.

    Its tally (see ``stock.Lines`` and ``stock.Told``) is kept through the same methods.
    """

    __slots__ = ("touched",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.touched: set[str] = set()

    def __setitem__(self, key, value) -> None:
        self.touched.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.touched.add(key)
        super().__delitem__(key)

    def pop(self, key, *default):
        self.touched.add(key)
        return super().pop(key, *default)

    def setdefault(self, key, default=None):
        self.touched.add(key)
        return super().setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def popitem(self):
        raise TypeError("a SKU's lines are removed by order id")

    def clear(self) -> None:
        raise TypeError("a SKU's lines are removed by order id")

    def restore(self, key, value) -> None:
        """Set an entry read back from `sku-lines`: kept in the tally, not logged again."""
        super().__setitem__(key, value)

    def __reduce__(self):
        return type(self), (dict(self),), (None, {"touched": set(self.touched)})


class _TouchedLines(_Touched, stock.Lines):
    __slots__ = ()


class _TouchedTold(_Touched, stock.Told):
    __slots__ = ()


def _new_views() -> tuple[_TouchedLines, _TouchedTold]:
    return _TouchedLines(), _TouchedTold()


# The per-order maps of a SKU's state, kept in `sku-lines` rather than in the SKU's own record.
_PER_ORDER = ("lines", "emitted")


def line_key(sku: str, order_id: str) -> str:
    """The `sku-lines` key of one order of one SKU (a JSON pair: any characters in either id)."""
    return json.dumps([sku, order_id], separators=(",", ":"))


class SkuStage(Stage):
    name = "sku-allocation"
    # Per partition: each order source's watermark, and the SKUs holding events.
    PROGRESS = "sku-progress"
    # Per order of a SKU: {"line": its line or None, "told": [ts, units short] last told or None}.
    LINES = "sku-lines"
    extra_tables = (PROGRESS, LINES)
    inputs = (topics.INVENTORY, topics.ORDER_LINES)
    keys = {topics.INVENTORY.schema: "sku", topics.ORDER_LINES.schema: "sku", topics.WATERMARK_SCHEMA: None}

    def __init__(self, settings: Settings, reference: Callable[[], stock.Reference]) -> None:
        self.settings = settings
        self.reference = reference
        # partition -> the release threshold every held SKU of it was last released to (on a tick or a
        # marker); forgotten at each rebalance, when a partition's state may be replaced by recovery
        self._released_to: dict[int, int | None] = {}
        # sku -> (lines, emitted) of every SKU of the partitions in `_indexed`, decoded; forgotten at
        # each rebalance and read again from `sku-lines` when a partition is next used
        self._views: dict[str, tuple[_TouchedLines, _TouchedTold]] = {}
        self._indexed: set[int] = set()

    # ------------------------------------------------------------------ state in two tables
    def _index(self, ctx: StageContext) -> None:
        """Read the per-order records of the partition at hand into `_views` (once after each rebalance).

        Called at the partition's first use, which comes after its recovery:
        the runtime reads no event of a partition whose tables are recovering.
        """
        for key, _, entry in ctx.tables[self.LINES].items_in({ctx.partition}):
            sku, order_id = json.loads(key)
            lines, told = self._views.get(sku) or self._views.setdefault(sku, _new_views())
            if entry.get("line") is not None:
                lines.restore(order_id, entry["line"])
            if entry.get("told") is not None:
                told.restore(order_id, entry["told"])
        self._indexed.add(ctx.partition)

    def _load(self, ctx: StageContext, sku: str) -> dict | None:
        """The SKU's whole state as the detector knows it: its own record with its per-order maps."""
        if ctx.partition not in self._indexed:
            self._index(ctx)
        record = ctx.get(sku)
        if record is None:
            return None
        lines, told = self._views.get(sku) or self._views.setdefault(sku, _new_views())
        state = dict(record)  # the stored record never holds the per-order maps
        # A state logged before the per-order records existed holds them itself: they move (and are logged).
        lines.update(state.pop("lines", None) or {})
        told.update(state.pop("emitted", None) or {})
        state["lines"], state["emitted"] = lines, told
        return state

    def _new(self, ctx: StageContext, sku: str) -> dict:
        if ctx.partition not in self._indexed:
            self._index(ctx)
        state = stock.new_sku_state(sku)
        state["lines"], state["emitted"] = self._views.get(sku) or self._views.setdefault(sku, _new_views())
        return state

    @staticmethod
    def _touched(state: dict) -> bool:
        return bool(state["lines"].touched or state["emitted"].touched)

    def _save(self, ctx: StageContext, sku: str, state: dict) -> None:
        """Log the SKU's own record and the records of the orders it touched since last saved."""
        lines, told = state["lines"], state["emitted"]
        table = ctx.tables[self.LINES]
        for order_id in lines.touched | told.touched:
            line, last_told = lines.get(order_id), told.get(order_id)
            if line is None and last_told is None:
                table.delete(ctx.partition, line_key(sku, order_id))
            else:
                table.put(ctx.partition, line_key(sku, order_id), {"line": line, "told": last_told})
        lines.touched.clear()
        told.touched.clear()
        ctx.store(sku, {name: value for name, value in state.items() if name not in _PER_ORDER})

    # ------------------------------------------------------------------ events
    def _release(self, ctx: StageContext, sku: str, state: dict | None, threshold: int | None, dirty: bool) -> bool:
        """Apply the SKU's held events up to `threshold`; True when it holds nothing more."""
        if state is None:
            return True
        held_before = len(state.get("pending") or ())
        outcome = stock.release_due(state, threshold, self.reference(), detected_at=ctx.wall_ms,
                                    rollup_orders=self.settings.stockout_rollup_orders,
                                    horizon_ms=self.settings.reorder_horizon_ms)
        if dirty or self._touched(state) or len(outcome.state.get("pending") or ()) != held_before:
            self._save(ctx, sku, outcome.state)
        for shortage in outcome.shortages:
            ctx.publish(topics.ORDER_SHORTAGES, shortage)
        for alert in outcome.alerts:
            ctx.publish_alert(alert)
        return not outcome.state.get("pending")

    def _progress(self, ctx: StageContext) -> dict:
        return ctx.tables[self.PROGRESS].get(f"p{ctx.partition}") or {"watermarks": {}, "holding": []}

    def _threshold(self, ctx: StageContext, here: dict) -> int | None:
        return stock.release_threshold(here["watermarks"], self.settings.partitions, ctx.read_up_to(topics.INVENTORY))

    def _release_all(self, ctx: StageContext, here: dict, held: dict, threshold: int | None, dirty: bool) -> bool:
        changed = False
        for sku, state in held.items():
            done = self._release(ctx, sku, state, threshold, dirty)
            if done and sku in here["holding"]:
                here["holding"].remove(sku)
                changed = True
            elif not done and sku not in here["holding"]:
                here["holding"].append(sku)
                changed = True
        return changed

    def apply(self, ctx: StageContext, schema: str, record: dict) -> None:
        here = self._progress(ctx)
        changed = False
        if schema == topics.WATERMARK_SCHEMA:
            source = record["source"]
            # Taken as told, also when lower: a source that was caught up and has fallen behind
            # again, or a worker that took the partition over and reads it from older offsets,
            # holds events back again rather than let order lines arrive behind the stock levels
            # already applied. Holding more is always safe.
            if record["watermark"] != here["watermarks"].get(source):
                here["watermarks"][source] = record["watermark"]
                changed = True
            threshold = self._threshold(ctx, here)
            if threshold is None or threshold == self._released_to.get(ctx.partition):
                # Every held event at or before this threshold has been applied already: markers
                # from the other sources, or a source that moved while another holds the minimum.
                if changed:
                    ctx.tables[self.PROGRESS].put(ctx.partition, f"p{ctx.partition}", here)
                return
            self._released_to[ctx.partition] = threshold
            held = {sku: self._load(ctx, sku) for sku in here["holding"]}
        else:
            sku = record["sku"]
            kind = "stock" if schema == topics.INVENTORY.schema else "line"
            held = {sku: stock.hold(self._load(ctx, sku) or self._new(ctx, sku), sku, kind, record)}
        threshold = self._threshold(ctx, here)
        released_to = self._released_to.get(ctx.partition)
        if released_to is not None and (threshold is None or threshold < released_to):
            # The threshold fell below the one every held SKU was released to (the stock input fell
            # behind again): this event may stay held at or before it, so that no longer holds.
            del self._released_to[ctx.partition]
        changed |= self._release_all(ctx, here, held, threshold, dirty=schema != topics.WATERMARK_SCHEMA)
        if changed:
            ctx.tables[self.PROGRESS].put(ctx.partition, f"p{ctx.partition}", here)

    def on_revoked(self) -> None:
        self._released_to.clear()
        self._views.clear()
        self._indexed.clear()

    def tick(self, ctx: StageContext) -> None:
        """Release what the inventory's progress alone now allows (no event or marker arrives to do it)."""
        here = self._progress(ctx)
        if not here["holding"]:
            return
        threshold = self._threshold(ctx, here)
        if threshold is None or threshold == self._released_to.get(ctx.partition):
            return
        self._released_to[ctx.partition] = threshold
        held = {sku: self._load(ctx, sku) for sku in list(here["holding"])}
        if self._release_all(ctx, here, held, threshold, dirty=False):
            ctx.tables[self.PROGRESS].put(ctx.partition, f"p{ctx.partition}", here)
