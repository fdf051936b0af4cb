"""Avro encoding and decoding of every Forewarn message, and JSON conversion for the CLI.

The ``.avsc`` files beside this module are the only definition of each record;
this module parses each of them once and never keeps a second copy in Python.

Records in Python are plain dicts. Timestamps (``timestamp-millis`` fields) are
``int`` epoch milliseconds everywhere, because detectors do arithmetic on them:
schemas are written with their logical types, but read through copies whose
``logicalType`` annotations are stripped (the binary encoding is the same long),
so decoding never builds a ``datetime``.

Every encoded message names its writer schema, in one of two framings:

* Avro single-object encoding (the default): ``C3 01``, the 8-byte little-endian
  CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, the Avro body.
* The Confluent wire format, when a schema registry is configured: ``00``, the
  4-byte big-endian registry schema id, the Avro body. The writer schema is
  registered under subject ``<topic>-value`` (or the record's full name when no
  topic is given, as Confluent's RecordNameStrategy does).

The decoder accepts both framings whatever it was configured with. It finds the
writer schema by fingerprint in a :class:`SchemaStore` (or by id in the registry)
and reads with the current schema of the same record name, so writers and readers
one version apart (an optional field added or removed) read each other's messages.

API::

    codec = Codec()                                  # or Codec(registry_url="http://...")
    data = codec.encode("forewarn.OrderEvent", record, topic="orders")
    name, record = codec.decode(data, expected="forewarn.OrderEvent")

    record = record_from_json("forewarn.OrderEvent", json.loads(line))   # RecordError
    obj = record_to_json("forewarn.Alert", alert)

Failures: :class:`DecodeError` (``reason`` is a short token for dead-letter
headers), :class:`EncodeError`, :class:`RecordError` (``path`` names the field),
:class:`RegistryError` (the registry could not be reached or refused a schema:
a condition to retry, not a bad message).

Schema files: ``<full name>.avsc``, one top-level record per file. Named types
may be defined inline in the record that uses them; a file may also refer to a
type that has its own file, and the loader inlines that definition so that every
schema is self-contained (its fingerprint and its registry copy need nothing else).
"""

from __future__ import annotations

import copy
import io
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    fingerprint as _avro_fingerprint,
    load_schema,
    parse_schema,
    to_parsing_canonical_form,
)

SCHEMA_DIR = Path(__file__).resolve().parent
# Earlier versions of the records, kept so that old messages decode: a schema change copies the
# file it replaces here first (schemas/previous/forewarn.Customer.v1.avsc).
PREVIOUS_DIR = "previous"

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_OBJECT_HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8
_CONFLUENT_HEADER_LEN = len(CONFLUENT_MAGIC) + 4

_FASTAVRO_MARKERS = ("__fastavro_parsed", "__named_schemas")


# ---------------------------------------------------------------- errors


class SchemaLoadError(Exception):
    """A schema file or schema text is not a usable Avro record schema."""


class DecodeError(Exception):
    """A message cannot be decoded. ``reason`` is a short token for dead-letter headers:

    empty, unknown-framing, header, unknown-fingerprint, no-registry,
    unknown-schema-id, not-avro, unexpected-schema, incompatible-schema, body.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class EncodeError(ValueError):
    """A record does not fit its schema."""

    def __init__(self, schema_name: str, message: str) -> None:
        super().__init__(f"{schema_name} record does not encode: {message}")
        self.schema_name = schema_name


class RegistryError(Exception):
    """The schema registry could not be used (unreachable, refused, or client missing).

    Unlike :class:`DecodeError` this says nothing about the message itself:
    retrying later may succeed, so it should not send the message to dead letters.
    """


class RecordError(ValueError):
    """A JSON object does not fit its schema. ``path`` names the field, e.g. ``lines[1].qty``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------- schemas


def _without_markers(schema: Any) -> Any:
    """A parsed schema as plain Avro JSON (fastavro adds bookkeeping keys at the top)."""
    if isinstance(schema, dict):
        return {k: v for k, v in schema.items() if k not in _FASTAVRO_MARKERS}
    return schema


def _strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    if isinstance(schema, dict):
        return {
            k: _strip_logical_types(v)
            for k, v in schema.items()
            if k != "logicalType" and k not in _FASTAVRO_MARKERS
        }
    return schema


def fingerprint_of(schema: Any) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as framed."""
    return bytes.fromhex(_avro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(eq=False)
class SchemaEntry:
    """One schema version, prepared once: everything encode/decode needs per message."""

    name: str  # full name, e.g. forewarn.OrderEvent
    parsed: dict  # parsed with logical types; the form used for JSON conversion
    plain: dict  # parsed with logical types stripped; the form used on the wire
    named: dict  # named types defined in this schema, full name -> definition
    text: str  # self-contained Avro JSON, as registered with a schema registry
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # 8 bytes, little-endian, as in single-object framing
    _json_in: Callable | None = field(default=None, repr=False)
    _json_out: Callable | None = field(default=None, repr=False)

    @classmethod
    def from_parsed(cls, parsed: dict, named: dict) -> SchemaEntry:
        if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
            raise SchemaLoadError("expected an Avro record schema at the top level")
        plain = parse_schema(_strip_logical_types(parsed), {}, _force=True)
        canonical = to_parsing_canonical_form(parsed)
        return cls(
            name=parsed["name"],
            parsed=parsed,
            plain=plain,
            named=named,
            text=json.dumps(_without_markers(parsed), separators=(",", ":")),
            canonical=canonical,
            fingerprint=bytes.fromhex(_avro_fingerprint(canonical, "CRC-64-AVRO")),
        )

    @classmethod
    def from_schema(cls, schema: str | Mapping) -> SchemaEntry:
        """From Avro JSON text or a dict; the schema must define every type it uses."""
        if isinstance(schema, (str, bytes)):
            try:
                schema = json.loads(schema)
            except ValueError as exc:
                raise SchemaLoadError(f"schema is not JSON: {exc}") from None
        named: dict = {}
        try:
            parsed = parse_schema(_without_markers(copy.deepcopy(schema)), named, _force=True)
        except (SchemaParseException, UnknownType, KeyError, TypeError, ValueError) as exc:
            raise SchemaLoadError(f"not a valid Avro schema: {exc}") from None
        return cls.from_parsed(parsed, named)


class SchemaStore:
    """Schemas by fingerprint, and the current schema of each record name.

    A new store holds every ``.avsc`` file of ``directory`` (this package's by
    default) as the current schemas. :meth:`add` makes other versions known, so
    that messages written with them decode (read through the current schema of
    the same name); ``current=True`` makes the added version the one that
    :class:`Codec` encodes with and reads into.
    """

    def __init__(self, directory: str | Path | None = SCHEMA_DIR) -> None:
        self._by_fingerprint: dict[bytes, SchemaEntry] = {}
        self._current: dict[str, SchemaEntry] = {}
        # All named types of the current schemas, shared across files.
        self.named_types: dict[str, Any] = {}
        # Bumped whenever a current schema changes, so codecs drop cached plans.
        self.version = 0
        if directory is not None:
            for path in sorted(Path(directory).glob("*.avsc")):
                self._add_entry(_load_file(path), current=True)
            # Earlier versions of the records (previous/<name>.v<N>.avsc): messages written with
            # them, kept on durable topics, still decode, read through the current version.
            for path in sorted((Path(directory) / PREVIOUS_DIR).glob("*.avsc")):
                self._add_entry(_load_file(path, previous=True), current=False)

    def add(self, schema: str | Mapping | SchemaEntry, *, current: bool = False) -> SchemaEntry:
        """Make a schema version known (Avro JSON text, a dict, or an entry). Returns its entry."""
        entry = schema if isinstance(schema, SchemaEntry) else SchemaEntry.from_schema(schema)
        return self._add_entry(entry, current=current)

    def _add_entry(self, entry: SchemaEntry, *, current: bool) -> SchemaEntry:
        known = self._by_fingerprint.setdefault(entry.fingerprint, entry)
        if current and self._current.get(known.name) is not known:
            self._current[known.name] = known
            self.named_types = {n: t for e in self._current.values() for n, t in e.named.items()}
            self.version += 1
        return known

    def current(self, name: str) -> SchemaEntry:
        try:
            return self._current[name]
        except KeyError:
            raise KeyError(f"unknown schema {name!r}; known: {', '.join(sorted(self._current))}") from None

    def current_or_none(self, name: str) -> SchemaEntry | None:
        return self._current.get(name)

    def by_fingerprint(self, fingerprint: bytes) -> SchemaEntry | None:
        return self._by_fingerprint.get(bytes(fingerprint))

    def schema_for(self, name: str) -> dict:
        """The current parsed schema (with logical types) of a record full name."""
        return self.current(name).parsed

    def names(self) -> list[str]:
        """Full names of the current records, sorted."""
        return sorted(self._current)

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def __len__(self) -> int:
        return len(self._by_fingerprint)


def _load_file(path: Path, previous: bool = False) -> SchemaEntry:
    """One schema file; an earlier version (``previous``) is named <name>.v<N>.avsc."""
    named: dict = {}
    try:
        # load_schema resolves references to types that have their own file and
        # inlines them, so the resulting schema is self-contained.
        parsed = load_schema(str(path), named_schemas=named)
    except (SchemaParseException, UnknownType, ValueError, KeyError, TypeError, OSError) as exc:
        raise SchemaLoadError(f"{path.name}: {exc}") from None
    try:
        entry = SchemaEntry.from_parsed(parsed, named)
    except SchemaLoadError as exc:
        raise SchemaLoadError(f"{path.name}: {exc}") from None
    if previous:
        if not re.fullmatch(rf"{re.escape(entry.name)}\.v[0-9]+\.avsc", path.name):
            raise SchemaLoadError(f"{path.name} defines {entry.name}; name the file {entry.name}.v<N>.avsc")
    elif path.name != f"{entry.name}.avsc":
        raise SchemaLoadError(f"{path.name} defines {entry.name}; name the file {entry.name}.avsc")
    if not parsed.get("doc"):
        raise SchemaLoadError(f"{path.name}: the record needs a \"doc\"")
    return entry


@lru_cache(maxsize=None)
def default_store() -> SchemaStore:
    """The package's schemas, loaded on first use."""
    return SchemaStore()


def schema_for(name: str) -> dict:
    """The parsed schema (with logical types) of a record in this package, by full name."""
    return default_store().schema_for(name)


def names() -> list[str]:
    """Full names of the records defined in this package."""
    return default_store().names()


# ---------------------------------------------------------------- codec


@dataclass(frozen=True)
class _ReadPlan:
    name: str
    writer: dict  # plain writer schema
    reader: dict | None  # plain reader schema, None when it is the writer


class Codec:
    """Encodes records into framed Avro messages and decodes them back.

    ``registry_url`` switches encoding to the Confluent wire format; the registry
    client is built on first use (never at construction), from ``registry_url``
    plus ``registry_config`` (extra SchemaRegistryClient settings such as
    ``basic.auth.user.info``), or ``registry_client`` is used as given.
    Registry calls are blocking HTTP, made once per schema and cached.
    """

    def __init__(
        self,
        store: SchemaStore | None = None,
        registry_url: str | None = None,
        *,
        registry_config: Mapping[str, Any] | None = None,
        registry_client: Any = None,
    ) -> None:
        self.store = store if store is not None else default_store()
        self.registry_url = registry_url
        self._registry_config = dict(registry_config or {})
        self._registry_client = registry_client
        self._uses_registry = registry_url is not None or registry_client is not None
        self._write_plans: dict[tuple[str, str | None], tuple[bytes, dict]] = {}
        self._read_plans: dict[bytes, _ReadPlan] = {}
        self._writers: dict[bytes, SchemaEntry] = {}
        self._store_version = self.store.version

    # -- encode

    def encode(self, schema_name: str, record: Mapping[str, Any], topic: str | None = None) -> bytes:
        """Frame and encode ``record`` with the current schema ``schema_name``.

        ``topic`` chooses the registry subject (``<topic>-value``); it is ignored
        without a registry, since single-object framing does not depend on it.
        """
        if self._store_version != self.store.version:
            self._forget_plans()
        key = (schema_name, topic if self._uses_registry else None)
        plan = self._write_plans.get(key)
        if plan is None:
            plan = self._write_plans[key] = self._write_plan(schema_name, key[1])
        header, schema = plan
        out = io.BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, schema, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(schema_name, str(exc)) from exc
        return out.getvalue()

    def _write_plan(self, schema_name: str, topic: str | None) -> tuple[bytes, dict]:
        entry = self.store.current(schema_name)
        if not self._uses_registry:
            return SINGLE_OBJECT_MARKER + entry.fingerprint, entry.plain
        subject = f"{topic}-value" if topic else entry.name
        schema_id = self._register(subject, entry)
        header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)
        # Our own messages then decode without asking the registry.
        self._read_plans.setdefault(header, _ReadPlan(entry.name, entry.plain, None))
        return header, entry.plain

    # -- decode

    def decode(self, data: bytes, expected: str | None = None) -> tuple[str, dict]:
        """Decode one framed message into (record full name, record).

        ``expected``: a record full name; a message of any other record raises
        DecodeError("unexpected-schema").
        """
        header_len, plan = self._plan_for(data, expected)
        body = io.BytesIO(data)
        body.seek(header_len)
        try:
            record = schemaless_reader(body, plan.writer, plan.reader)
        except SchemaResolutionError as exc:
            raise DecodeError(
                "incompatible-schema", f"{plan.name}: the writer's schema cannot be read as the current one: {exc}"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any failure inside the body means a bad body
            raise DecodeError("body", f"{plan.name} body does not decode: {type(exc).__name__}: {exc}") from exc
        left = len(data) - body.tell()
        if left:
            raise DecodeError("body", f"{plan.name} body has {left} bytes left over after the record")
        return plan.name, record

    def _frame(self, data: bytes) -> tuple[bytes, int]:
        """The framing header of ``data`` and its length; DecodeError if the framing is not ours."""
        if self._store_version != self.store.version:
            self._forget_plans()
        if not data:
            raise DecodeError("empty", "message is empty")
        first = data[0]
        if first == 0xC3:
            header_len = _SINGLE_OBJECT_HEADER_LEN
            if len(data) > 1 and data[1] != 0x01:
                raise DecodeError(
                    "unknown-framing", "message starts with byte 0xC3 but not with the Avro single-object marker C3 01"
                )
        elif first == 0x00:
            header_len = _CONFLUENT_HEADER_LEN
        else:
            raise DecodeError(
                "unknown-framing",
                f"message starts with byte 0x{first:02X}: neither Avro single-object (C3 01) "
                "nor Confluent (00) framing",
            )
        if len(data) < header_len:
            raise DecodeError("header", f"message is {len(data)} bytes, shorter than its {header_len}-byte header")
        return bytes(data[:header_len]), header_len

    def _plan_for(self, data: bytes, expected: str | None) -> tuple[int, _ReadPlan]:
        header, header_len = self._frame(data)
        plan = self._read_plans.get(header)
        if plan is None:
            plan = self._read_plans[header] = self._read_plan(header)
        if expected is not None and plan.name != expected:
            raise DecodeError("unexpected-schema", f"expected a {expected} message, got {plan.name}")
        return header_len, plan

    def writer_schema(self, data: bytes, expected: str | None = None) -> tuple[bytes, SchemaEntry]:
        """The framing header of a message and the schema it was written with, without decoding the body.

        For readers that hand the Avro body to another decoder (the ClickHouse
        sink lets ClickHouse parse it): same checks and errors as ``decode`` up
        to the body.
        """
        header, _ = self._frame(data)
        entry = self._writers.get(header)
        if entry is None:
            entry = self._writers[header] = self._writer_of(header)
        if expected is not None and entry.name != expected:
            raise DecodeError("unexpected-schema", f"expected a {expected} message, got {entry.name}")
        return header, entry

    def _writer_of(self, header: bytes) -> SchemaEntry:
        """The writer schema a framing header names: from the registry by id, or the store by fingerprint."""
        if header[:1] == CONFLUENT_MAGIC:
            return self._fetch_registry_schema(struct.unpack(">I", header[1:5])[0])
        writer = self.store.by_fingerprint(header[2:])
        if writer is None:
            raise DecodeError(
                "unknown-fingerprint",
                f"no known schema has fingerprint {header[2:].hex()}; "
                "the writer used a schema version this reader was not given",
            )
        return writer

    def _read_plan(self, header: bytes) -> _ReadPlan:
        writer = self._writer_of(header)
        reader = self.store.current_or_none(writer.name)
        if reader is None or reader is writer:
            return _ReadPlan(writer.name, writer.plain, None)
        return _ReadPlan(writer.name, writer.plain, reader.plain)

    def _forget_plans(self) -> None:
        self._write_plans.clear()
        self._read_plans.clear()
        self._writers.clear()
        self._store_version = self.store.version

    # -- registry

    def _registry(self) -> Any:
        if self._registry_client is None:
            SchemaRegistryClient, _, _ = _registry_classes()
            self._registry_client = SchemaRegistryClient({"url": self.registry_url, **self._registry_config})
        return self._registry_client

    def _register(self, subject: str, entry: SchemaEntry) -> int:
        _, Schema, SchemaRegistryError = _registry_classes()
        try:
            return self._registry().register_schema(subject, Schema(entry.text, "AVRO"))
        except SchemaRegistryError as exc:
            raise RegistryError(f"registering {entry.name} under subject {subject!r} failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise RegistryError(f"schema registry at {self.registry_url} is unavailable: {exc}") from exc

    def _fetch_registry_schema(self, schema_id: int) -> SchemaEntry:
        if not self._uses_registry:
            raise DecodeError(
                "no-registry",
                f"message is in the Confluent wire format (schema id {schema_id}) but no schema registry is configured",
            )
        _, _, SchemaRegistryError = _registry_classes()
        try:
            schema = self._registry().get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError("unknown-schema-id", f"schema registry has no schema with id {schema_id}") from exc
            raise RegistryError(f"fetching schema id {schema_id} failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise RegistryError(f"schema registry at {self.registry_url} is unavailable: {exc}") from exc
        if (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError("not-avro", f"schema id {schema_id} is a {schema.schema_type} schema, not Avro")
        try:
            return self.store.add(schema.schema_str)
        except SchemaLoadError as exc:
            raise DecodeError("not-avro", f"schema id {schema_id}: {exc}") from exc


def _registry_classes() -> tuple[type, type, type]:
    try:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        from confluent_kafka.schema_registry.error import SchemaRegistryError
    except ImportError as exc:
        raise RegistryError(
            "schema registry support needs confluent-kafka's schemaregistry extra "
            f"(confluent-kafka[schemaregistry]): {exc}"
        ) from exc
    return SchemaRegistryClient, Schema, SchemaRegistryError


# ---------------------------------------------------------------- JSON


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_TIMESTAMP_EXAMPLE = '"2026-03-02T09:15:00Z"'
# The instants a datetime can hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
_MIN_TIMESTAMP_MS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // _ONE_MS
_MAX_TIMESTAMP_MS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // _ONE_MS
_Y2000_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_400_YEARS_MS = 146_097 * 86_400_000  # days in 400 Gregorian years


def parse_timestamp_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp that names its timezone (Z or an offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO-8601 timestamp such as {_TIMESTAMP_EXAMPLE}, got {_show(text)}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp {_show(text)} has no timezone; add Z for UTC, e.g. {_TIMESTAMP_EXAMPLE}")
    ms = (moment - _EPOCH) // _ONE_MS
    # A local time late on 9999-12-31 west of UTC is in the year 10000 in UTC: no date type can hold
    # it, so it could not be shown again (in an error, an alert, `forewarn alerts`).
    if not _MIN_TIMESTAMP_MS <= ms <= _MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp {_show(text)} is outside the years 0001 to 9999 in UTC")
    return ms


def format_timestamp_ms(ms: int) -> str:
    """ISO-8601 UTC with a trailing Z; milliseconds only when they are not zero.

    Every long is shown, also one outside the years 1 to 9999 (a time in microseconds
    written into a millisecond field, say): its year is written with a sign, as ISO
    8601's expanded years are (``+58136-06-24T10:00:00Z``), where a date type would
    raise and take down whatever was showing or checking it.
    """
    years_added = 0
    if not _MIN_TIMESTAMP_MS <= ms <= _MAX_TIMESTAMP_MS:
        # The Gregorian calendar repeats every 400 years: shift into 2000..2399, add the years back.
        cycles = (ms - _Y2000_MS) // _400_YEARS_MS
        ms -= cycles * _400_YEARS_MS
        years_added = cycles * 400
    moment = _EPOCH + timedelta(milliseconds=ms)
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if years_added:
        year = moment.year + years_added
        text = (f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}") + text[4:]
    millis = ms % 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False)
    if _unwritable_at(text) is not None:
        text = json.dumps(value)  # a lone surrogate, escaped: the message itself must print anywhere
    return text if len(text) <= 60 else text[:57] + "..."


def _unwritable_at(text: str) -> int | None:
    """Index of the first character UTF-8 cannot hold (half of a UTF-16 surrogate pair), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _shown_name(name: str) -> str:
    """A field name or map key from the input, as a path can show it: escaped if unprintable, cut if long."""
    if not name or not name.isprintable():  # half a surrogate pair is not printable either
        name = json.dumps(name)
    return name if len(name) <= 60 else name[:57] + "..."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_Converter = Callable[[Any, str], Any]


def _type_label(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return " or ".join(_type_label(s) for s in schema)
    if schema.get("logicalType") == "timestamp-millis":
        return "timestamp"
    if schema["type"] in ("record", "enum", "fixed"):
        return schema["name"].rsplit(".", 1)[-1]
    return schema["type"]


def _integer(label: str, low: int, high: int) -> _Converter:
    def convert(value: Any, path: str) -> int:
        if type(value) is not int:
            raise RecordError(path, f"expected {label}, got {_show(value)}")
        if not low <= value <= high:
            raise RecordError(path, f"expected {label}, got {value}, which is out of range")
        return value

    return convert


def _of_type(label: str, types: tuple[type, ...], cast: Callable = lambda v: v) -> _Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise RecordError(path, f"expected {label}, got {_show(value)}")
        return cast(value)

    return convert


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise RecordError(path, f"expected string, got {_show(value)}")
    _check_writable(value, path, "character")
    return value


def _check_writable(text: str, path: str, what: str) -> None:
    # JSON may spell half of a surrogate pair ("\ud83d" alone); Avro strings are UTF-8, which
    # cannot hold one, so the record would only fail later, at encoding, with no field named.
    at = _unwritable_at(text)
    if at is not None:
        raise RecordError(path, f"{what} {at + 1} is half of a UTF-16 surrogate pair (\\u{ord(text[at]):04x}) "
                                f"that UTF-8 cannot hold; write the whole character")


def _null(value: Any, path: str) -> None:
    if value is not None:
        raise RecordError(path, f"expected null, got {_show(value)}")
    return None


def _bytes(value: Any, path: str) -> bytes:
    # Avro's JSON encoding: one character (U+0000..U+00FF) per byte.
    if not isinstance(value, str):
        raise RecordError(path, f"expected bytes as a string, got {_show(value)}")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise RecordError(path, "expected bytes as a string of characters U+0000..U+00FF") from None


def _timestamp_in(value: Any, path: str) -> int:
    if not isinstance(value, str):
        raise RecordError(path, f"expected an ISO-8601 timestamp such as {_TIMESTAMP_EXAMPLE}, got {_show(value)}")
    try:
        return parse_timestamp_ms(value)
    except (ValueError, OverflowError) as exc:
        raise RecordError(path, str(exc)) from None


_PRIMITIVES_IN: dict[str, _Converter] = {
    "null": _null,
    "boolean": _of_type("boolean", (bool,)),
    "int": _integer("int", *_INT_RANGE),
    "long": _integer("long", *_LONG_RANGE),
    "float": _of_type("float", (int, float), float),
    "double": _of_type("double", (int, float), float),
    "string": _string,
    "bytes": _bytes,
}


class _JsonInCompiler:
    """Builds a converter from JSON-loaded values to records, once per schema."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.by_name: dict[str, _Converter] = {}

    def build(self, schema: Any) -> _Converter:
        if isinstance(schema, str):
            if schema in _PRIMITIVES_IN:
                return _PRIMITIVES_IN[schema]
            return self._named(schema)
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if schema.get("logicalType") == "timestamp-millis" and kind == "long":
            return _timestamp_in
        if kind in _PRIMITIVES_IN:
            return _PRIMITIVES_IN[kind]
        if kind == "array":
            return self._array(self.build(schema["items"]))
        if kind == "map":
            return self._map(self.build(schema["values"]))
        if kind == "enum":
            return self._register(schema["name"], _enum(schema))
        if kind == "fixed":
            return self._register(schema["name"], _fixed(schema))
        if kind in ("record", "error"):
            return self._record(schema)
        raise SchemaLoadError(f"unsupported Avro type {kind!r}")

    def _register(self, name: str, convert: _Converter) -> _Converter:
        self.by_name[name] = convert
        return convert

    def _named(self, name: str) -> _Converter:
        if name in self.by_name:
            return self.by_name[name]
        if name in self.named and isinstance(self.named[name], dict) and "name" in self.named[name]:
            return self.build(self.named[name])
        # A reference to a record still being built (a recursive type): look it up on use.
        return lambda value, path: self.by_name[name](value, path)

    def _union(self, branches: list) -> _Converter:
        nullable = "null" in branches
        others = [b for b in branches if b != "null"]
        converters = [self.build(b) for b in others]
        if len(converters) == 1:
            (only,) = converters

            def convert(value: Any, path: str) -> Any:
                if value is None and nullable:
                    return None
                return only(value, path)

            return convert
        label = _type_label(branches)

        def convert_any(value: Any, path: str) -> Any:
            if value is None and nullable:
                return None
            for branch in converters:
                try:
                    return branch(value, path)
                except RecordError:
                    continue
            raise RecordError(path, f"expected {label}, got {_show(value)}")

        return convert_any

    @staticmethod
    def _array(item: _Converter) -> _Converter:
        def convert(value: Any, path: str) -> list:
            if not isinstance(value, list):
                raise RecordError(path, f"expected a list, got {_show(value)}")
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return convert

    @staticmethod
    def _map(item: _Converter) -> _Converter:
        def convert(value: Any, path: str) -> dict:
            if not isinstance(value, dict):
                raise RecordError(path, f"expected an object, got {_show(value)}")
            out = {}
            for k, v in value.items():
                where = f"{path}[{_shown_name(json.dumps(k))}]"
                _check_writable(k, where, "key character")
                out[k] = item(v, where)
            return out

        return convert

    def _record(self, schema: dict) -> _Converter:
        name = schema["name"]
        short = name.rsplit(".", 1)[-1]
        fields: list[tuple[str, _Converter, bool, Any]] = []
        field_names = [f["name"] for f in schema["fields"]]
        known = frozenset(field_names)

        def convert(value: Any, path: str) -> dict:
            if not isinstance(value, dict):
                raise RecordError(path, f"expected an object ({short}), got {_show(value)}")
            if len(value.keys() - known):
                unknown = next(k for k in value if k not in known)
                raise RecordError(_join(path, _shown_name(unknown)),
                                  f"unknown field; {short} has {', '.join(field_names)}")
            out = {}
            for fname, fconvert, has_default, default in fields:
                if fname in value:
                    out[fname] = fconvert(value[fname], _join(path, fname))
                elif has_default:
                    out[fname] = copy.deepcopy(default)
                else:
                    raise RecordError(_join(path, fname), "required field missing")
            return out

        # Registered before the fields are built, so recursive references resolve.
        self.by_name[name] = convert
        for f in schema["fields"]:
            fields.append((f["name"], self.build(f["type"]), "default" in f, f.get("default")))
        return convert


def _enum(schema: dict) -> _Converter:
    symbols = schema["symbols"]
    known = frozenset(symbols)
    listed = ", ".join(symbols)

    def convert(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise RecordError(path, f"expected one of {listed}, got {_show(value)}")
        if value not in known:
            raise RecordError(path, f"unknown symbol {_show(value)}; expected one of {listed}")
        return value

    return convert


def _fixed(schema: dict) -> _Converter:
    size = schema["size"]

    def convert(value: Any, path: str) -> bytes:
        data = _bytes(value, path)
        if len(data) != size:
            raise RecordError(path, f"expected {size} bytes, got {len(data)}")
        return data

    return convert


class _JsonOutCompiler:
    """Builds a converter from records to JSON-ready values, once per schema."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.by_name: dict[str, Callable[[Any], Any]] = {}

    def build(self, schema: Any) -> Callable[[Any], Any]:
        if isinstance(schema, str):
            if schema == "bytes":
                return _bytes_out
            if schema in _PRIMITIVES_IN:
                return _same
            return self.by_name.get(schema) or (lambda value: self.by_name[schema](value))
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if schema.get("logicalType") == "timestamp-millis" and kind == "long":
            return _timestamp_out
        if kind in ("bytes", "fixed"):
            out = _bytes_out
            if kind == "fixed":
                self.by_name[schema["name"]] = out
            return out
        if kind == "array":
            item = self.build(schema["items"])
            return lambda value: [item(v) for v in value]
        if kind == "map":
            item = self.build(schema["values"])
            return lambda value: {k: item(v) for k, v in value.items()}
        if kind == "enum":
            self.by_name[schema["name"]] = _same
            return _same
        if kind in ("record", "error"):
            return self._record(schema)
        return _same

    def _union(self, branches: list) -> Callable[[Any], Any]:
        others = [b for b in branches if b != "null"]
        if len(others) == 1:
            only = self.build(others[0])
            return lambda value: None if value is None else only(value)
        # Several non-null branches: pick by the value's Python type.
        choices = [(_python_types(b, self.named), self.build(b)) for b in others]

        def convert(value: Any) -> Any:
            if value is None:
                return None
            for types, branch in choices:
                if isinstance(value, types):
                    return branch(value)
            return value

        return convert

    def _record(self, schema: dict) -> Callable[[Any], Any]:
        fields: list[tuple[str, Callable[[Any], Any], Any]] = []

        def convert(record: Mapping[str, Any]) -> dict:
            return {fname: fconvert(record.get(fname, default)) for fname, fconvert, default in fields}

        self.by_name[schema["name"]] = convert
        for f in schema["fields"]:
            fields.append((f["name"], self.build(f["type"]), f.get("default")))
        return convert


def _same(value: Any) -> Any:
    return value


def _bytes_out(value: bytes) -> str:
    return bytes(value).decode("latin-1")


def _timestamp_out(value: Any) -> str:
    if type(value) is not int:
        raise RecordError("", f"expected a timestamp as int epoch milliseconds, got {value!r}")
    return format_timestamp_ms(value)


def _python_types(schema: Any, named: Mapping[str, Any]) -> tuple[type, ...]:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    return {
        "boolean": (bool,),
        "int": (int,),
        "long": (int,),
        "float": (float, int),
        "double": (float, int),
        "string": (str,),
        "enum": (str,),
        "bytes": (bytes, bytearray),
        "fixed": (bytes, bytearray),
        "array": (list, tuple),
        "map": (dict,),
        "record": (dict,),
        "error": (dict,),
    }.get(kind, (object,))


def _json_in(entry: SchemaEntry) -> _Converter:
    if entry._json_in is None:
        entry._json_in = _JsonInCompiler(entry.named).build(entry.parsed)
    return entry._json_in


def _json_out(entry: SchemaEntry) -> Callable[[Any], Any]:
    if entry._json_out is None:
        entry._json_out = _JsonOutCompiler(entry.named).build(entry.parsed)
    return entry._json_out


# Rules Avro cannot express, by record full name: each yields (path, problem).
def _order_event_problems(record: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    lines = record.get("lines") or []
    if record.get("event_type") == "placed" and not lines:
        yield "lines", "must not be empty when event_type is placed"
    for i, line in enumerate(lines):
        if line["qty"] <= 0:
            yield f"lines[{i}].qty", f"must be greater than 0, got {line['qty']}"


_SEMANTIC_CHECKS: dict[str, Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]] = {
    "forewarn.OrderEvent": _order_event_problems,
}


def semantic_problems(schema_name: str, record: Mapping[str, Any]) -> list[RecordError]:
    """Every rule beyond the schema that ``record`` breaks (empty when it is fine)."""
    check = _SEMANTIC_CHECKS.get(schema_name)
    return [RecordError(path, problem) for path, problem in check(record)] if check else []


def record_from_json(schema_name: str, obj: Any, *, store: SchemaStore | None = None) -> dict:
    """Convert a JSON object (as from json.loads) into a record of ``schema_name``.

    Timestamps are ISO-8601 strings with a timezone (converted to UTC epoch ms),
    optional fields and fields with defaults may be absent, unknown fields are
    rejected, and the rules in ``semantic_problems`` are checked.
    Raises RecordError naming the field path.
    """
    entry = (store or default_store()).current(schema_name)
    record = _json_in(entry)(obj, "")
    problems = semantic_problems(schema_name, record)
    if problems:
        raise problems[0]
    return record


def record_to_json(schema_name: str, record: Mapping[str, Any], *, store: SchemaStore | None = None) -> dict:
    """A record as a JSON-ready dict: timestamps as ISO-8601 UTC strings ending in Z."""
    entry = (store or default_store()).current(schema_name)
    return _json_out(entry)(record)
