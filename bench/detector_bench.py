"""How fast the out-of-stock detector's two stages run, in memory, without Kafka.

    python bench/detector_bench.py [--orders N] [--skus N] [--busy-sku OPEN]

Feeds N orders (1-3 lines over a catalog of S SKUs) interleaved with stock
changes through both stages in event-time order, then the same events with
every order line read after all stock changes (a replay's worst case, which
makes the SKU stage re-evaluate history). Prints events per second for each.

Then one busy SKU: OPEN orders of one unit each placed on it first (not
timed), then 1,000 more, timed, once with the SKU well stocked and once with
it out of stock (every new order short). Prints the CPU microseconds per
order placed, which should not grow with OPEN.
Run by hand; figures go in the README with the command that produced them.
"""

from __future__ import annotations

import argparse
import random
import time

from streams.detectors.stock import (
    Reference,
    apply_line_shortage,
    apply_order_event,
    apply_order_line,
    apply_stock_level,
)


def make_events(orders: int, skus: int, seed: int = 1) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    events: list[tuple[str, dict]] = []
    ts = 0
    for n in range(skus):
        events.append(("stock", {"event_id": f"s-init-{n}", "ts": ts, "event_type": "stock_level",
                                 "sku": f"SKU-{n}", "available": rng.randint(20, 200)}))
    for n in range(orders):
        ts += 1000
        lines = [{"sku": f"SKU-{rng.randrange(skus)}", "qty": rng.randint(1, 3), "unit_price_cents": 100}
                 for _ in range(rng.randint(1, 3))]
        events.append(("order", {"event_id": f"o-{n}", "ts": ts, "event_type": "placed", "order_id": f"O-{n}",
                                 "customer_id": f"C-{n % 500}", "lines": lines}))
        if rng.random() < 0.3:
            events.append(("stock", {"event_id": f"s-{n}", "ts": ts + 1, "event_type": "stock_level",
                                     "sku": f"SKU-{rng.randrange(skus)}", "available": rng.randint(0, 200)}))
        if n >= 50 and rng.random() < 0.8:
            old = n - 50
            events.append(("order", {"event_id": f"x-{old}", "ts": ts + 2, "event_type": "shipped",
                                     "order_id": f"O-{old}", "customer_id": "C", "lines": []}))
    return events


def run(events: list[tuple[str, dict]], lines_last: bool) -> tuple[int, float]:
    ref = Reference()
    skus: dict[str, dict] = {}
    orders: dict[str, dict] = {}
    pending_lines: list[dict] = []
    handled = 0

    def sku_stage(line: dict) -> None:
        nonlocal handled
        out = apply_order_line(skus.get(line["sku"]), line, ref, detected_at=0, rollup_orders=20)
        skus[line["sku"]] = out.state
        handled += 1
        order_stage(out.shortages)

    def order_stage(shortages: list[dict]) -> None:
        nonlocal handled
        for shortage in shortages:
            out = apply_line_shortage(orders.get(shortage["order_id"]), shortage, ref, detected_at=0,
                                      max_alternatives=3)
            orders[shortage["order_id"]] = out.state
            handled += 1

    start = time.perf_counter()
    for kind, event in events:
        if kind == "stock":
            out = apply_stock_level(skus.get(event["sku"]), event, ref, detected_at=0, rollup_orders=20)
            skus[event["sku"]] = out.state
            handled += 1
            order_stage(out.shortages)
        else:
            out = apply_order_event(orders.get(event["order_id"]), event, ref, detected_at=0, max_alternatives=3)
            orders[event["order_id"]] = out.state
            handled += 1
            if lines_last:
                pending_lines += out.line_events
            else:
                for line in out.line_events:
                    sku_stage(line)
    for line in pending_lines:
        sku_stage(line)
    return handled, time.perf_counter() - start


def busy_sku(open_lines: int, available: int, timed: int = 1_000) -> float:
    """CPU seconds per order placed on one SKU that already has `open_lines` open orders."""
    ref = Reference()
    state = apply_stock_level(None, {"event_id": "s-0", "ts": 0, "event_type": "stock_level", "sku": "SKU-BUSY",
                                     "available": available}, ref, detected_at=0, rollup_orders=20).state

    def place(n: int) -> None:
        nonlocal state
        line = {"event_id": f"o-{n}", "ts": 10 * (n + 1), "action": "open", "order_id": f"O-{n}",
                "customer_id": f"C-{n % 500}", "sku": "SKU-BUSY", "qty": 1, "placed_ts": 10 * (n + 1),
                "reason": "placed"}
        state = apply_order_line(state, line, ref, detected_at=0, rollup_orders=20).state

    for n in range(open_lines):
        place(n)
    start = time.process_time()
    for n in range(open_lines, open_lines + timed):
        place(n)
    return (time.process_time() - start) / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--busy-sku", type=int, default=5_000, metavar="OPEN",
                        help="open orders on the busy SKU before the timed ones (default 5,000)")
    args = parser.parse_args()
    for flag in ("orders", "skus", "busy_sku"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must not be negative, got {getattr(args, flag)}")
    events = make_events(args.orders, args.skus)
    for label, lines_last in (("event-time order", False), ("order lines read last", True)):
        handled, seconds = run(events, lines_last)
        print(f"{label:24} {handled:>8} detector calls in {seconds:6.2f}s = {handled / seconds:>9,.0f}/s")
    for label, available in (("well stocked", 10 ** 9), ("out of stock", 0)):
        per_order = busy_sku(args.busy_sku, available)
        print(f"busy SKU, {args.busy_sku:,} open orders, {label}: {per_order * 1e6:,.0f} us CPU per order placed")


if __name__ == "__main__":
    main()
