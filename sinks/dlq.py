"""The dead-letter topic: messages no processor could read, kept whole, with headers saying why.

Nothing valid is lost and nothing invalid is dropped silently: the original
key and value bytes are republished unchanged, and the headers name the
source topic, partition and offset and the reason, so an operator can find
the producer at fault and replay the message once it is fixed.
"""

from __future__ import annotations

from datetime import datetime, timezone

REASON = "forewarn.error.reason"
# The kind of failure as a class name (DecodeError, KeyMismatch, ProcessingError, ...).
ERROR_CLASS = "forewarn.error.class"
MESSAGE = "forewarn.error.message"
SOURCE_TOPIC = "forewarn.source.topic"
SOURCE_PARTITION = "forewarn.source.partition"
SOURCE_OFFSET = "forewarn.source.offset"
FAILED_AT = "forewarn.failed.at"
PROCESSOR = "forewarn.processor"


def dead_letter_headers(
    *, reason: str, message: str, topic: str, partition: int, offset: int, processor: str, now_ms: int,
    error_class: str,
) -> list[tuple[str, bytes]]:
    failed_at = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    return [
        (REASON, reason.encode()),
        (ERROR_CLASS, error_class.encode()),
        (MESSAGE, message.encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (FAILED_AT, failed_at.replace("+00:00", "Z").encode()),
        (PROCESSOR, processor.encode()),
    ]


def headers_dict(headers) -> dict[str, str]:
    """Headers as a dict of strings, from either confluent-kafka's list or Faust's mapping."""
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    return {k: (v.decode() if isinstance(v, (bytes, bytearray)) else str(v)) for k, v in items}
