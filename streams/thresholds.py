"""Every rule's thresholds: defaults, and one FOREWARN_* variable each to change them.

The names here are what the README's rule table documents and what
`forewarn rules` prints. Durations are milliseconds in code and given in
seconds in the environment (``FOREWARN_SLA_CHAT_S=90``); percentages and
counts are whole numbers. Each threshold declares the values it may take, and
a variable outside them stops the command with a message naming it and them.
"""

from __future__ import annotations

import math
from dataclasses import Field, dataclass, field, fields, replace

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# The longest duration any threshold takes: a year is beyond every window a rule keeps state for.
LONGEST_S = 365 * DAY_MS // 1000


class ThresholdError(ValueError):
    """A threshold variable holds something unusable; the message names it."""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _count(default: int, low: int, high: int | None = None):
    """A whole-number threshold and the values it may take (``high`` None: no upper bound)."""
    return field(default=default, metadata={"allowed": (low, high)})


def _seconds(default_ms: int, low_s: float = 0.001, high_s: float = LONGEST_S):
    """A duration threshold, in milliseconds here and seconds in the environment; at least 1 ms unless 0 is allowed."""
    return field(default=default_ms, metadata={"allowed": (low_s, high_s)})


@dataclass(frozen=True)
class Thresholds:
    # Lifecycle of every alert: after resolution a key stays quiet this long unless severity rises (0: never quiet).
    alert_cooldown_ms: int = _seconds(30 * MINUTE_MS, low_s=0)
    # cart_loss_spike: sessions losing carts after the same page, within the window.
    cart_loss_spike_sessions: int = _count(5, 1)
    cart_loss_spike_window_ms: int = _seconds(15 * MINUTE_MS)
    # support_sla_risk / support_sla_breach: first-reply (and next-reply) targets per channel.
    sla_chat_ms: int = _seconds(2 * MINUTE_MS)
    sla_phone_ms: int = _seconds(5 * MINUTE_MS)
    sla_sms_ms: int = _seconds(15 * MINUTE_MS)
    sla_social_ms: int = _seconds(60 * MINUTE_MS)
    sla_email_ms: int = _seconds(240 * MINUTE_MS)
    # At 100 the risk alert would come with the breach, so it stops below.
    sla_risk_percent: int = _count(80, 1, 99)
    # The platinum target as a share of the channel's: shorter, or the same at 100.
    sla_platinum_percent: int = _count(50, 1, 100)
    # support_backlog: tickets waiting for a first reply on one channel, or the oldest waiting this many targets.
    backlog_tickets: int = _count(20, 1)
    backlog_oldest_targets: int = _count(2, 1)
    # repeat_contact
    repeat_contact_window_ms: int = _seconds(72 * HOUR_MS)
    # complaint_spike: window count >= max(minimum, factor x mean of the previous windows)
    complaint_spike_min: int = _count(10, 1)
    complaint_spike_factor: int = _count(3, 1)
    complaint_spike_window_ms: int = _seconds(HOUR_MS)
    # Windows of history kept per category: state, so bounded.
    complaint_spike_history: int = _count(24, 1, 1000)
    # return_spike
    return_spike_returns: int = _count(5, 1)
    return_spike_window_ms: int = _seconds(7 * DAY_MS)
    return_spike_percent: int = _count(10, 1, 100)
    return_spike_orders_window_ms: int = _seconds(30 * DAY_MS)
    # web_error_spike: the lowest status counted as an error is an HTTP error status.
    web_error_min: int = _count(20, 1)
    web_error_percent: int = _count(5, 1, 100)
    web_error_window_ms: int = _seconds(5 * MINUTE_MS)
    web_error_status: int = _count(500, 400, 599)
    # late_shipment: warning this long before promised_ship_by, breach at it.
    late_shipment_warning_ms: int = _seconds(4 * HOUR_MS)
    # negative_feedback: at or below these scores (social mentions: below zero). Scores run 1-5 for
    # csat and reviews and 0-10 for nps; the top of a scale would make every answer negative.
    csat_negative_max: int = _count(2, 1, 4)
    nps_negative_max: int = _count(6, 0, 9)
    review_negative_max: int = _count(2, 1, 4)
    # payment_failed: no payment_succeeded within this long.
    payment_grace_ms: int = _seconds(30 * MINUTE_MS)

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
            if raw is None or raw.strip() == "":
                continue
            changes[f.name] = _parsed(f, name, raw)
        return replace(cls(), **changes)

    def describe(self) -> list[tuple[str, str, str]]:
        """(field, environment variable, value as the environment takes it) for every threshold."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = f"{value / 1000:g}" if f.name.endswith("_ms") else str(value)
            out.append((f.name, self.env_name(f.name), shown))
        return out


def allowed_text(f: Field) -> str:
    """What a threshold's variable takes: `a whole number from 1 to 99`, `a number of seconds from 0.001 to ...`."""
    low, high = f.metadata["allowed"]
    if f.name.endswith("_ms"):
        return f"a number of seconds from {low:g} to {high:.0f} ({high * 1000 // DAY_MS:.0f} days)"
    kind = "a whole percentage" if f.name.endswith("_percent") else "a whole number"
    return f"{kind} from {low} to {high}" if high is not None else f"{kind}, {low} or more"


def _parsed(f: Field, name: str, raw: str) -> int:
    """The value of threshold ``f`` from its variable's text, in milliseconds for durations."""
    low, high = f.metadata["allowed"]
    try:
        number = float(raw) if f.name.endswith("_ms") else int(raw)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < low or (high is not None and number > high):
        raise ThresholdError(f"{name}={raw!r}: expected {allowed_text(f)}")
    return _ms(number) if f.name.endswith("_ms") else number
