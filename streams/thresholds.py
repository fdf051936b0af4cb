"""Every rule's thresholds: defaults, and one FOREWARN_* variable each to change them.

The names here are what the README's rule table documents and what
`forewarn rules` prints. Durations are milliseconds in code and given in
seconds in the environment (``FOREWARN_SLA_CHAT_S=90``); percentages and
counts are whole numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


class ThresholdError(ValueError):
    """A threshold variable holds something unusable; the message names it."""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class Thresholds:
    # Lifecycle of every alert: after resolution a key stays quiet this long unless severity rises.
    alert_cooldown_ms: int = 30 * MINUTE_MS
    # cart_loss_spike: sessions losing carts after the same page, within the window.
    cart_loss_spike_sessions: int = 5
    cart_loss_spike_window_ms: int = 15 * MINUTE_MS
    # support_sla_risk / support_sla_breach: first-reply (and next-reply) targets per channel.
    sla_chat_ms: int = 2 * MINUTE_MS
    sla_phone_ms: int = 5 * MINUTE_MS
    sla_sms_ms: int = 15 * MINUTE_MS
    sla_social_ms: int = 60 * MINUTE_MS
    sla_email_ms: int = 240 * MINUTE_MS
    sla_risk_percent: int = 80
    sla_platinum_percent: int = 50
    # support_backlog: tickets waiting for a first reply on one channel, or the oldest waiting this many targets.
    backlog_tickets: int = 20
    backlog_oldest_targets: int = 2
    # repeat_contact
    repeat_contact_window_ms: int = 72 * HOUR_MS
    # complaint_spike: window count >= max(minimum, factor x mean of the previous windows)
    complaint_spike_min: int = 10
    complaint_spike_factor: int = 3
    complaint_spike_window_ms: int = HOUR_MS
    complaint_spike_history: int = 24
    # return_spike
    return_spike_returns: int = 5
    return_spike_window_ms: int = 7 * DAY_MS
    return_spike_percent: int = 10
    return_spike_orders_window_ms: int = 30 * DAY_MS
    # web_error_spike
    web_error_min: int = 20
    web_error_percent: int = 5
    web_error_window_ms: int = 5 * MINUTE_MS
    web_error_status: int = 500
    # late_shipment: warning this long before promised_ship_by, breach at it.
    late_shipment_warning_ms: int = 4 * HOUR_MS
    # negative_feedback: at or below these scores (social mentions: below zero).
    csat_negative_max: int = 2
    nps_negative_max: int = 6
    review_negative_max: int = 2
    # payment_failed: no payment_succeeded within this long.
    payment_grace_ms: int = 30 * MINUTE_MS

    def sla_target_ms(self, channel: str, tier: str | None) -> int:
        """The reply target of a ticket on `channel` for a customer of `tier`."""
        base = getattr(self, f"sla_{channel}_ms", self.sla_email_ms)
        if tier == "platinum":
            return base * self.sla_platinum_percent // 100
        return base

    @staticmethod
    def env_name(field_name: str) -> str:
        """FOREWARN_SLA_CHAT_S for sla_chat_ms; FOREWARN_WEB_ERROR_MIN for web_error_min."""
        if field_name.endswith("_ms"):
            return f"FOREWARN_{field_name[:-3].upper()}_S"
        return f"FOREWARN_{field_name.upper()}"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "Thresholds":
        changes = {}
        for f in fields(cls):
            name = cls.env_name(f.name)
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                number = float(raw) if f.name.endswith("_ms") else int(raw)
            except ValueError:
                unit = "a number of seconds" if f.name.endswith("_ms") else "a whole number"
                raise ThresholdError(f"{name}={raw!r}: expected {unit}") from None
            if number <= 0 and f.name != "alert_cooldown_ms":
                raise ThresholdError(f"{name}={raw!r}: must be above 0")
            if number < 0:
                raise ThresholdError(f"{name}={raw!r}: must not be negative")
            changes[f.name] = _ms(number) if f.name.endswith("_ms") else number
        return replace(cls(), **changes)

    def describe(self) -> list[tuple[str, str, str]]:
        """(field, environment variable, value as the environment takes it) for every threshold."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = f"{value / 1000:g}" if f.name.endswith("_ms") else str(value)
            out.append((f.name, self.env_name(f.name), shown))
        return out
