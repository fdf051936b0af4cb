"""Building alert records (schemas/forewarn.Alert.avsc) and their stable identities."""

from __future__ import annotations

import uuid

OPEN = "open"
UPDATED = "updated"
RESOLVED = "resolved"

# Fixed namespace so an alert's id is the same whenever the same events are replayed.
_ALERT_NAMESPACE = uuid.UUID("5f0c8f63-2a7e-4d59-9b8e-6f1d0c3a9e21")

# Evidence lists stay bounded; the first ids (what opened the alert) are kept.
MAX_EVIDENCE = 50


def dedup_key(rule: str, entity: str) -> str:
    """One alert per rule and entity while it is open."""
    return f"{rule}:{entity}"


def alert_id_for(key: str, opening_event_id: str) -> str:
    """Deterministic id of one alert episode: the dedup key plus the event that opened it."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{key}|{opening_event_id}"))


def merge_evidence(evidence: list[str], *event_ids: str | None) -> list[str]:
    merged = list(evidence)
    for event_id in event_ids:
        if event_id and event_id not in merged and len(merged) < MAX_EVIDENCE:
            merged.append(event_id)
    return merged


def alert_record(
    *,
    alert_id: str,
    rule: str,
    status: str,
    severity: str,
    audience: str,
    key: str,
    title: str,
    summary: str,
    details: dict[str, str],
    evidence: list[str],
    event_ts: int,
    detected_at: int,
    customer_id: str | None = None,
    order_id: str | None = None,
    sku: str | None = None,
    ticket_id: str | None = None,
    session_id: str | None = None,
    page: str | None = None,
    category: str | None = None,
) -> dict:
    return {
        "alert_id": alert_id,
        "rule": rule,
        "status": status,
        "severity": severity,
        "audience": audience,
        "dedup_key": key,
        "title": title,
        "summary": summary,
        "customer_id": customer_id,
        "order_id": order_id,
        "sku": sku,
        "ticket_id": ticket_id,
        "session_id": session_id,
        "page": page,
        "category": category,
        "details": {k: str(v) for k, v in details.items()},
        "evidence": list(evidence),
        "event_ts": event_ts,
        "detected_at": detected_at,
    }
