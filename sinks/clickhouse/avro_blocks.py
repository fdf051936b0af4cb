"""Avro object container files made from framed Kafka messages, for ClickHouse to parse.

The sink does not decode Avro in Python: that would cost more than everything
else it does together. A Kafka message's body (after its single-object or
registry header) is exactly the binary encoding of one record, so the sink
wraps bodies in an Avro object container file whose schema is the writer's
schema with the Kafka coordinate fields put in front, and ClickHouse parses
the file with ``INSERT ... FORMAT Avro``, mapping fields to columns by name.

A topic with derived columns (tables.DERIVED_COLUMNS, worked out in Python
from the decoded record) gets them as string fields after the writer's: a
record's binary encoding is its fields' encodings one after the other, so
appending the encoded values to the body makes it a record of that schema.

Each message gets its own container block (count 1, byte size, body, sync
marker), so a bad body cannot shift the records after it: one cut short makes
ClickHouse fail on the block, and the sink then finds the bad message in
Python. (ClickHouse does not check that a block is used up: a body with bytes
left over after a whole record is stored as that record, where Python's
decoder would have refused it; on a topic with derived columns the sink has
decoded every body in Python already, so there it is refused.)
"""

from __future__ import annotations

import json
import os

from schemas.codec import SchemaEntry
from sinks.clickhouse.tables import KAFKA_FIELDS

_MAGIC = b"Obj\x01"


def avro_long(value: int) -> bytes:
    """Avro's zig-zag variable-length encoding of a long."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode()
    return avro_long(len(data)) + data


def schema_with_coordinates(entry: SchemaEntry, derived: tuple[str, ...] = ()) -> dict:
    """The writer's schema with the Kafka coordinate fields first and the derived string fields last."""
    schema = json.loads(entry.text)
    clash = {f["name"] for f in schema["fields"]} & set(derived)
    if clash:
        raise ValueError(f"{entry.name} has a field named {sorted(clash)[0]!r}, which the sink stores as a derived "
                         f"column: rename the derived column in sinks/clickhouse/tables.py")
    schema["fields"] = ([dict(f) for f in KAFKA_FIELDS] + schema["fields"]
                        + [{"name": name, "type": "string"} for name in derived])
    return schema


def derived_values(values) -> bytes:
    """The encoding of derived string values, to append to a body with ``ContainerFile.add``."""
    return b"".join(avro_string(value) for value in values)


class ContainerFile:
    """One container file under construction: a header, then one block per message.

    ``derived`` names the string fields appended to every record (see the module doc).
    """

    def __init__(self, entry: SchemaEntry, header: bytes, derived: tuple[str, ...] = ()) -> None:
        self.sync = os.urandom(16)
        schema = json.dumps(schema_with_coordinates(entry, derived), separators=(",", ":")).encode()
        meta = (avro_long(2)
                + avro_string("avro.schema") + avro_long(len(schema)) + schema
                + avro_string("avro.codec") + avro_long(4) + b"null"
                + b"\x00")
        self.parts: list[bytes] = [_MAGIC + meta + self.sync]
        self.header_len = len(header)
        self.count = 0

    def add(self, coordinates: bytes, offset: int, value: bytes, derived: bytes = b"") -> None:
        """Append one message; ``coordinates`` is the encoded topic, topic id and partition.

        ``derived``: the encoded derived values (``derived_values``), when the file declares derived fields.
        """
        # The hot loop of the sink: pieces are joined once, in getvalue().
        offset_bytes = _small_longs[offset] if offset < _SMALL else avro_long(offset)
        size = len(coordinates) + len(offset_bytes) + len(value) - self.header_len + len(derived)
        self.parts += (b"\x02", _small_longs[size] if size < _SMALL else avro_long(size), coordinates,
                       offset_bytes, value[self.header_len:], derived, self.sync)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


# Encoded longs 0.._SMALL-1, looked up instead of computed for record sizes and early offsets.
_SMALL = 1 << 14
_small_longs = [avro_long(n) for n in range(_SMALL)]


def coordinates(topic: str, topic_id: str, partition: int) -> bytes:
    return avro_string(topic) + avro_string(topic_id) + avro_long(partition)
