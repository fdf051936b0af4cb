"""Signal bundles: many signals for one receiving entity travel as one message.

Some signal topics carry a message per business event for a handful of keys:
every page view tells its page (``page_hit``), every ticket event its channel
and its category. Each such message would cost the receiving stage a full
pass through Faust, far more than the detection it feeds. So the runtime
gathers the signals of those topics per (topic, key) for a few tens of
milliseconds and sends them as one ``forewarn.internal.Signal`` of kind
``bundle``; the receiving side hands each signal inside to its stage, in the
order they were sent, exactly as if they had come one by one.

Nothing about duplicate detection changes: each signal keeps the position of
the event behind it (``data["src"]``, see ``lifecycle.already_applied``), so a
bundle sent again after a crash is recognised signal by signal, whatever
bundles the signals were cut into the first time. A stage that reads a
bundled topic must therefore not emit signals of its own: theirs would all
carry the bundle's one position.

A bundle is ``{"kind": "bundle", "key": K, "event_id": <last signal's>,
"ts": <latest signal time>, "data": {"signals": JSON [[event_id, ts, kind,
data], ...]}}``; a lone signal is sent as it is.
"""

from __future__ import annotations

from streams.runtime.state import decode_json, encode_json

BUNDLE_KIND = "bundle"
# Signals gathered before the runtime sends them without waiting for its next flush.
MAX_BUNDLED = 2_000


class Bundler:
    """Signals per (topic, key), in the order they were added, until drained."""

    def __init__(self, max_bundled: int = MAX_BUNDLED) -> None:
        self.max_bundled = max_bundled
        self._pending: dict[tuple[str, str], list[dict]] = {}
        self.count = 0

    def add(self, topic: str, record: dict) -> bool:
        """Keep `record` for `topic`; True when enough are kept that they should be sent now."""
        self._pending.setdefault((topic, record["key"]), []).append(record)
        self.count += 1
        return self.count >= self.max_bundled

    def drain(self) -> list[tuple[str, dict]]:
        """(topic, record) to send, one per (topic, key): a bundle, or the lone signal itself."""
        pending, self._pending, self.count = self._pending, {}, 0
        return [(topic, records[0] if len(records) == 1 else bundle(key, records))
                for (topic, key), records in pending.items()]


def bundle(key: str, records: list[dict]) -> dict:
    signals = [[r["event_id"], r["ts"], r["kind"], r["data"]] for r in records]
    return {"event_id": records[-1]["event_id"], "ts": max(r["ts"] for r in records), "kind": BUNDLE_KIND,
            "key": key, "data": {"signals": encode_json(signals).decode()}}


def unbundle(record: dict) -> list[dict]:
    """The signals a received Signal stands for: those of a bundle, in order, or the record itself."""
    if record.get("kind") != BUNDLE_KIND:
        return [record]
    key = record["key"]
    return [{"event_id": event_id, "ts": ts, "kind": kind, "key": key, "data": data}
            for event_id, ts, kind, data in decode_json(record["data"]["signals"])]
