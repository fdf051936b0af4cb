"""The lifecycle every alert follows, and the shape of what a detection stage returns.

One alert per dedup key while it is open. A *track* (a small dict kept in the
entity's state) remembers the key's current episode:

* the condition starts holding: ``open``, with an id derived from the key and
  the opening event (the same input replayed gives the same id);
* it still holds but what the alert says changed (severity, or the caller's
  ``fingerprint`` of the figures a reader acts on): ``updated``;
* it stops holding: ``resolved``;
* after a resolution the key stays quiet for the cooldown, unless the new
  severity is higher than the last one: a flapping condition does not page
  anyone every few minutes, a worsening one does.

Time is event time, passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.detectors.alerts import OPEN, RESOLVED, UPDATED, alert_id_for, alert_record, merge_evidence

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(init=False, slots=True)
class Result:
    """What one input changes: the entity's new state and the records to publish.

    Made several times per event: slots, and an ``__init__`` that makes the
    empty lists itself (each list not given is a new one, never shared).
    """

    state: dict | None
    alerts: list[dict]
    # (internal topic name, forewarn.internal.Signal record) for other stages.
    signals: list[tuple[str, dict]]
    # forewarn.OutreachTask versions and forewarn.TaskUpdateRejected records (the task stage only).
    tasks: list[dict]
    rejections: list[dict]

    def __init__(self, state: dict | None, alerts: list[dict] | None = None,
                 signals: list[tuple[str, dict]] | None = None, tasks: list[dict] | None = None,
                 rejections: list[dict] | None = None) -> None:
        self.state = state
        self.alerts = [] if alerts is None else alerts
        self.signals = [] if signals is None else signals
        self.tasks = [] if tasks is None else tasks
        self.rejections = [] if rejections is None else rejections

    def extend(self, other: "Result") -> "Result":
        self.state = other.state
        if other.alerts:
            self.alerts += other.alerts
        if other.signals:
            self.signals += other.signals
        if other.tasks:
            self.tasks += other.tasks
        if other.rejections:
            self.rejections += other.rejections
        return self


def signal(topic: str, key: str, kind: str, event_id: str, ts: int, **data) -> tuple[str, dict]:
    """A forewarn.internal.Signal for `topic`, keyed by `key`; None values are left out."""
    return topic, {"event_id": event_id, "ts": ts, "kind": kind, "key": key,
                   "data": {k: str(v) for k, v in data.items() if v is not None}}


def already_applied(state: dict, sig: dict) -> bool:
    """Whether this signal is a repeat, by the position of the event that caused it; records it if new.

    Stages send every signal with ``data["src"]`` = ``topic:partition:offset`` of
    the event behind it. After a crash or rebalance a stage processes events
    again from its last commit and sends their signals again; for one source
    partition they arrive in offset order, so a receiving entity that keeps the
    highest offset applied per (kind, source partition) recognises every repeat
    with a few numbers of state, where counting stages would otherwise count twice.
    """
    src = sig["data"].get("src")
    if not src:
        return False
    topic, partition, offset = src.rsplit(":", 2)
    key = f"{sig['kind']}:{topic}:{partition}"
    applied = state.setdefault("applied", {})
    if int(offset) <= applied.get(key, -1):
        return True
    applied[key] = int(offset)
    return False


def is_open(track: dict | None) -> bool:
    return bool(track) and track.get("open", False)


def transition(
    track: dict | None,
    *,
    key: str,
    active: bool,
    severity: str,
    ts: int,
    event_id: str,
    cooldown_ms: int,
    fingerprint: str = "",
) -> tuple[dict | None, str | None]:
    """Move one dedup key's track given whether its condition holds at `ts`.

    Returns the new track and the status to publish (None: nothing to say).
    """
    if not is_open(track):
        if not active:
            return track, None
        if track and track.get("resolved_ts") is not None:
            quiet_until = track["resolved_ts"] + cooldown_ms
            if ts < quiet_until and SEVERITY_RANK[severity] <= SEVERITY_RANK[track.get("severity", "info")]:
                return track, None
        return {"alert_id": alert_id_for(key, event_id), "open": True, "severity": severity,
                "fingerprint": fingerprint, "opened_ts": ts, "resolved_ts": None, "evidence": [event_id]}, OPEN
    if active:
        if severity == track["severity"] and fingerprint == track.get("fingerprint", ""):
            return track, None
        track = dict(track, severity=severity, fingerprint=fingerprint)
        track["evidence"] = merge_evidence(track["evidence"], event_id)
        return track, UPDATED
    track = dict(track, open=False, resolved_ts=ts)
    track["evidence"] = merge_evidence(track["evidence"], event_id)
    return track, RESOLVED


def note_evidence(track: dict | None, *event_ids: str | None) -> None:
    if track:
        track["evidence"] = merge_evidence(track.get("evidence", []), *event_ids)


def alert_for(track: dict, status: str, *, rule: str, audience: str, key: str, title: str, summary: str,
              details: dict, event_ts: int, detected_at: int, **entity) -> dict:
    """The alert record of `track`'s episode with `status`; entity fields (customer_id, order_id, ...) as given."""
    severity = track["severity"]
    return alert_record(alert_id=track["alert_id"], rule=rule, status=status, severity=severity,
                        audience=audience, key=key, title=title, summary=summary,
                        details={k: v for k, v in details.items() if v is not None},
                        evidence=track["evidence"], event_ts=event_ts, detected_at=detected_at, **entity)


def iso(ms: int | None) -> str:
    from datetime import datetime, timezone

    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def minutes(ms: int) -> str:
    """A duration for people: 90 s, 12 min, 3.5 h, 2 d."""
    if ms < 120_000:
        return f"{ms // 1000} s"
    if ms < 2 * 3_600_000:
        return f"{ms // 60_000} min"
    if ms < 2 * 86_400_000:
        return f"{ms / 3_600_000:.1f} h"
    return f"{ms / 86_400_000:.1f} d"
