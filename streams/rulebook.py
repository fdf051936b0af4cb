"""Every rule in one table: what it watches, who it is for, its thresholds, and the queue of its tasks.

`forewarn rules` prints it with the current values; the README's rule table
says the same in prose, and a unit test keeps the two and the thresholds in
step.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.detectors.tasks import TASK_RULES
from streams.thresholds import Thresholds


@dataclass(frozen=True)
class Rule:
    name: str
    per: str
    audience: str
    fires_when: str
    thresholds: tuple[str, ...] = ()

    @property
    def queue(self) -> str | None:
        """Where its outreach tasks go (P1 tasks go to swarm instead); None: no task."""
        entry = TASK_RULES.get(self.name)
        return entry[0] if entry else None


RULES: tuple[Rule, ...] = (
    Rule("out_of_stock_open_order", "order", "cs", "an open order has lines the stock cannot cover (oldest order first)",
         ("max_alternatives",)),
    Rule("sku_stockout_impact", "sku", "ops", "one SKU's shortage touches many open orders (roll-up)",
         ("stockout_rollup_orders",)),
    Rule("cart_lost", "session", "cs", "a cart view shows fewer items than the session's adds and removes imply"),
    Rule("cart_loss_spike", "page", "it", "many sessions lose their carts after visiting the same page",
         ("cart_loss_spike_sessions", "cart_loss_spike_window_ms")),
    Rule("order_not_visible", "order", "it", "an order lookup does not find an order that was placed"),
    Rule("support_sla_risk", "ticket", "cs", "a ticket waits for an agent's reply past a share of its target",
         ("sla_risk_percent", "sla_chat_ms", "sla_phone_ms", "sla_sms_ms", "sla_social_ms", "sla_email_ms",
          "sla_platinum_percent")),
    Rule("support_sla_breach", "ticket", "cs", "a ticket waits for an agent's reply past its target",
         ("sla_chat_ms", "sla_phone_ms", "sla_sms_ms", "sla_social_ms", "sla_email_ms", "sla_platinum_percent")),
    Rule("support_backlog", "channel", "ops", "too many tickets wait for a first reply, or the oldest waits too long",
         ("backlog_tickets", "backlog_oldest_targets")),
    Rule("repeat_contact", "customer", "cs", "a customer opens another ticket within the window, on any channel",
         ("repeat_contact_window_ms",)),
    Rule("complaint_spike", "category", "ops", "tickets in one category reach max(minimum, factor x recent mean)",
         ("complaint_spike_min", "complaint_spike_factor", "complaint_spike_window_ms", "complaint_spike_history")),
    Rule("return_spike", "sku", "product", "a SKU has many returns, a large share of the units ordered",
         ("return_spike_returns", "return_spike_window_ms", "return_spike_percent", "return_spike_orders_window_ms")),
    Rule("web_error_spike", "page", "it", "a page answers many requests with server errors, a share of its traffic",
         ("web_error_min", "web_error_percent", "web_error_window_ms", "web_error_status")),
    Rule("late_shipment", "order", "cs", "an open order is not shipped by its promised_ship_by",
         ("late_shipment_warning_ms",)),
    Rule("negative_feedback", "event", "cs", "a low csat, nps or review score, or a negative social mention",
         ("csat_negative_max", "nps_negative_max", "review_negative_max")),
    Rule("payment_failed", "order", "cs", "a failed payment is not followed by a successful one in time",
         ("payment_grace_ms",)),
)


def describe(thresholds: Thresholds, settings_values: dict[str, str]) -> str:
    """The rule table with current values, for `forewarn rules`."""
    shown = {name: (env, value) for name, env, value in thresholds.describe()}
    env_of_setting = {"max_alternatives": "FOREWARN_MAX_ALTERNATIVES",
                      "stockout_rollup_orders": "FOREWARN_STOCKOUT_ROLLUP_ORDERS"}
    lines = []
    for rule in RULES:
        queue = rule.queue
        lines.append(f"{rule.name}  (per {rule.per}, audience {rule.audience}, "
                     + (f"tasks to {queue} or swarm)" if queue else "no task)"))
        lines.append(f"    fires when {rule.fires_when}")
        for name in rule.thresholds:
            if name in shown:
                env, value = shown[name]
                unit = " s" if name.endswith("_ms") else ""
                lines.append(f"    {env:40} {value}{unit}")
            else:
                lines.append(f"    {env_of_setting[name]:40} {settings_values[name]}")
    env, value = shown["alert_cooldown_ms"]
    lines.append(f"every rule: a resolved alert's key stays quiet unless severity rises\n    {env:40} {value} s")
    return "\n".join(lines)
