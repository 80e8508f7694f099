"""Run-metadata events: the contract between the pipelines and the consumer.

A pipeline describes a run with a metadata document in one of two schemas (Airflow-era snake_case,
current camelCase). :func:`parse_run` normalises either into one canonical :class:`Run`; the
original document travels untouched beside it, for the report's ``metadata`` field.

Everything here is pure: no I/O, no Kafka, no Airflow. Every rejection is an :class:`InvalidEvent`
whose message is one line naming the field (as the document spells it) and the offending value.

Wire format (one Kafka message per event), the envelope the hooks send::

    key      the run uuid, so every event of a run lands on one partition, in order
    headers  event-kind: started|finished, schema-version: 1
    value    {"schema_version": 1, "kind": ..., "run": Run.to_dict(), "metadata": {original}}

A bare metadata document (what ``index.sh`` builds, sent by any Kafka client) is an event too: its
kind follows its status; key and headers are optional and, when present, must agree with it.
Readers re-normalise the document with :func:`decode_event` rather than trusting ``run``, so a
fix in normalisation applies to events already on the topic.

What the event model accepts, the report index stores: uuids are usable document ids, and the
document respects Elasticsearch's limits on strings, key paths and nesting (see
:func:`check_indexable`). :class:`EventLimits` bounds what one run may cost the consumer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

SCHEMA_VERSION = 1

# Kafka refuses messages over 1 MB by default (message.max.bytes); keep room for key, headers and
# the canonical ``run`` that travels beside the document.
MAX_EVENT_BYTES = 900_000

STARTED = "started"
FINISHED = "finished"
KINDS = (STARTED, FINISHED)

ACTIVE_STATUSES = frozenset({"running", "started", "queued", "scheduled"})
TERMINAL_STATUSES = frozenset(
    {"success", "failure", "upstream_failed", "skipped", "error", "cancelled", "canceled", "aborted", "timeout"}
)
_STATUS_ALIASES = {"failed": "failure", "succeeded": "success"}

KIND_HEADER = "event-kind"
VERSION_HEADER = "schema-version"

# Elasticsearch refuses document ids over 512 bytes. The charset keeps ids safe in URLs, shells and
# Kafka tooling: UUIDs, CI test ids (abc123-0) and Airflow run ids (scheduled__2024-05-02T00:00:00+00:00).
# A first character that is a letter or digit rules out '.' and '..' (which Elasticsearch's URLs
# cannot address), a leading '_', and ids a command line would take for an option.
MAX_UUID_BYTES = 512
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")
_UUID_RULE = "letters, digits and . _ : + -, starting with a letter or digit"

# Lucene refuses a term over 32,766 bytes; Elasticsearch's ``flattened`` field (the report's
# ``metadata``) indexes each leaf as one term, "key.path\0value", and nests at most 20 objects.
MAX_TERM_BYTES = 32_766
MAX_DEPTH = 20

_SHOW_CHARS = 60


class InvalidEvent(ValueError):
    """A metadata document or a Kafka message that cannot be a run event; names the field and value."""

    def __init__(self, message: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass(frozen=True)
class EventLimits:
    """Bounds on what one run may cost: the consumer queries metrics over the whole window and
    holds its partition's offset until the run's results may exist."""

    max_window: timedelta = timedelta(days=7)  # RUN_WINDOW_MAX_HOURS
    earliest: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    future_slack: timedelta = timedelta(minutes=5)  # clocks of pipelines and brokers disagree a little


DEFAULT_LIMITS = EventLimits()


@dataclass(frozen=True)
class Run:
    """The canonical run record, whatever schema the pipeline wrote."""

    uuid: str
    benchmark: str | None
    status: str  # lower case; 'failed' is spelled 'failure'
    cluster_name: str | None = None
    cluster_version: str | None = None
    platform: str | None = None
    network_type: str | None = None
    release_stream: str | None = None
    ci_system: str | None = None
    start: datetime | None = None  # timezone-aware, UTC
    end: datetime | None = None
    duration_s: float | None = None
    master_count: int | None = None
    worker_count: int | None = None
    infra_count: int | None = None
    workload_count: int | None = None
    total_count: int | None = None
    master_type: str | None = None
    worker_type: str | None = None
    infra_type: str | None = None
    workload_type: str | None = None
    build_url: str | None = None
    upstream_job: str | None = None
    upstream_job_build: str | None = None

    @property
    def finished(self) -> bool:
        """The run will not change any more (whether it passed or not)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        """The canonical fields, JSON-ready: dates as ISO 8601 UTC ending in ``Z``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Event:
    kind: str  # 'started' or 'finished'
    run: Run
    metadata: Mapping[str, Any]  # the document as the pipeline wrote it


@dataclass(frozen=True)
class Message:
    """An event as Kafka carries it."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


# -- the two schemas -----------------------------------------------------------------------------

# Canonical field -> the keys that may carry it, camelCase first. ``benchmark`` (camel) and
# ``build_tag`` (snake) both name the workload; camelCase ``buildTag`` is a CI build id, not a
# benchmark, and only travels in ``metadata``.
_KEYS: dict[str, tuple[str, ...]] = {
    "uuid": ("uuid",),
    "benchmark": ("benchmark", "build_tag"),
    "status": ("jobStatus", "job_status"),
    "cluster_name": ("clusterName", "cluster_name"),
    "cluster_version": ("ocpVersion", "cluster_version"),
    "platform": ("platform",),
    "network_type": ("networkType", "network_type"),
    "release_stream": ("releaseStream", "release_stream"),
    "ci_system": ("ciSystem", "ci_system"),
    "start": ("startDate", "start_date", "startDateUnixTimestamp"),
    "end": ("endDate", "end_date", "endDateUnixTimestamp"),
    "duration_s": ("jobDuration", "job_duration"),
    "master_count": ("masterNodesCount", "master_count"),
    "worker_count": ("workerNodesCount", "worker_count"),
    "infra_count": ("infraNodesCount", "infra_count"),
    "workload_count": ("workloadNodesCount", "workload_count"),
    "total_count": ("totalNodesCount", "total_count"),
    "master_type": ("masterNodesType", "master_type"),
    "worker_type": ("workerNodesType", "worker_type"),
    "infra_type": ("infraNodesType", "infra_type"),
    "workload_type": ("workloadNodesType", "workload_type"),
    "build_url": ("buildUrl", "build_url"),
    "upstream_job": ("upstreamJob", "upstream_job"),
    "upstream_job_build": ("upstreamJobBuild", "upstream_job_build"),
}
_COUNTS = ("master_count", "worker_count", "infra_count", "workload_count", "total_count")
_TEXTS = (
    "benchmark", "cluster_name", "cluster_version", "platform", "network_type", "release_stream", "ci_system",
    "master_type", "worker_type", "infra_type", "workload_type", "build_url", "upstream_job", "upstream_job_build",
)  # fmt: skip
_CAMEL_MARKERS = frozenset(key for keys in _KEYS.values() for key in keys if key != key.lower())

# Shell pipelines write unset variables as "" and jq -r writes null as "null".
_ABSENT = frozenset({"", "null", "none"})


def parse_run(doc: Any) -> Run:
    """Normalise a metadata document, in either schema, into a :class:`Run`; raise :class:`InvalidEvent`."""
    if not isinstance(doc, Mapping):
        raise InvalidEvent(f"document: expected a JSON object, got {_type_name(doc)}", "document", _type_name(doc))
    _check_size(_dumps(doc, "document"), "document")
    check_indexable(doc)
    fields_ = _Fields(doc)

    key, raw = fields_.get("uuid")
    if raw is None:
        raise InvalidEvent("uuid: missing or empty (every event needs the run uuid)", "uuid", doc.get("uuid"))
    uuid = _uuid(key, raw)

    key, raw = fields_.get("status")
    if raw is None:
        raise InvalidEvent(f"{key}: missing (expected a status such as running, success or failure)", key, None)
    status = _status(key, raw)

    start = fields_.date("start")
    end = fields_.date("end")
    if start is not None and end is not None and end < start:
        end_key, end_raw = fields_.get("end")
        start_key, start_raw = fields_.get("start")
        raise InvalidEvent(f"{end_key}: {_show(end_raw)} is before {start_key} {_show(start_raw)}", end_key, end_raw)

    duration = fields_.duration("duration_s")
    if duration is None and start is not None and end is not None:
        duration = (end - start).total_seconds()

    values: dict[str, Any] = {name: fields_.count(name) for name in _COUNTS}
    values.update({name: fields_.text(name) for name in _TEXTS})
    return Run(uuid=uuid, status=status, start=start, end=end, duration_s=duration, **values)


def make_event(
    doc: Any, kind: str | None = None, *, now: datetime | None = None, limits: EventLimits = DEFAULT_LIMITS
) -> Event:
    """A validated event for ``doc``. ``kind`` defaults to what the status says.

    A 'finished' event needs a terminal status and both dates, because the consumer queries metrics
    over the run's window; a 'started' event needs a status that is not terminal. Dates before
    ``limits.earliest`` and windows longer than ``limits.max_window`` are refused; so are dates
    later than ``now`` (when given) by more than ``limits.future_slack``.
    """
    run = parse_run(doc)
    fields_ = _Fields(doc)  # for the keys as this document spells them
    status_key = fields_.get("status")[0]
    if kind is None:
        kind = FINISHED if run.finished else STARTED
    elif kind not in KINDS:
        raise InvalidEvent(f"kind: {_show(kind)} is not one of {', '.join(KINDS)}", "kind", kind)
    elif kind == STARTED and run.finished:
        raise InvalidEvent(
            f"kind: 'started' contradicts {status_key} {run.status!r}, which says the run is over", "kind", kind
        )
    elif kind == FINISHED and not run.finished:
        raise InvalidEvent(
            f"kind: 'finished' contradicts {status_key} {run.status!r}, which says the run is not over", "kind", kind
        )
    if kind == FINISHED:
        for name, value in (("start", run.start), ("end", run.end)):
            if value is None:
                key = fields_.get(name)[0]
                raise InvalidEvent(f"{key}: missing (a finished run needs its start and end dates)", key, None)
    _check_window(run, fields_, now, limits)
    return Event(kind=kind, run=run, metadata=dict(doc))


def _check_window(run: Run, fields_: _Fields, now: datetime | None, limits: EventLimits) -> None:
    dates = [(name, value) for name, value in (("start", run.start), ("end", run.end)) if value is not None]
    for name, value in dates:
        if value < limits.earliest:
            key, raw = fields_.get(name)
            unset = " (unix time 0: is the variable that sets it unset?)" if value.timestamp() == 0 else ""
            raise InvalidEvent(
                f"{key}: {_show(raw)} is before {format_date(limits.earliest)}, the earliest date accepted{unset}",
                key,
                raw,
            )
    if now is not None:
        for name, value in reversed(dates):
            ahead = value - _utc(now)
            if ahead > limits.future_slack:
                key, raw = fields_.get(name)
                raise InvalidEvent(
                    f"{key}: {_show(raw)} is {_span(ahead)} in the future (now is {format_date(_utc(now))}; "
                    f"at most {_span(limits.future_slack)} ahead is accepted)",
                    key,
                    raw,
                )
    if run.start is not None and run.end is not None and run.end - run.start > limits.max_window:
        (start_key, start_raw), (end_key, end_raw) = fields_.get("start"), fields_.get("end")
        raise InvalidEvent(
            f"{end_key}: {_show(end_raw)} is {_span(run.end - run.start)} after {start_key} {_show(start_raw)}; "
            f"a run may last at most {_span(limits.max_window)} (RUN_WINDOW_MAX_HOURS)",
            end_key,
            end_raw,
        )


def encode_event(event: Event) -> Message:
    """The Kafka message for ``event``; raises :class:`InvalidEvent` if it would be too large."""
    value = _dumps(
        {"schema_version": SCHEMA_VERSION, "kind": event.kind, "run": event.run.to_dict(), "metadata": event.metadata},
        "metadata",
    )
    _check_size(value, "event")
    headers = [(KIND_HEADER, event.kind.encode()), (VERSION_HEADER, str(SCHEMA_VERSION).encode())]
    return Message(key=event.run.uuid.encode(), value=value, headers=headers)


def decode_event(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None = (),
    *,
    now: datetime | None = None,
    limits: EventLimits = DEFAULT_LIMITS,
) -> Event:
    """The event a Kafka message carries, re-normalised from its document; raise :class:`InvalidEvent`.

    Takes a consumer record's ``key``, ``value`` and ``headers`` as aiokafka gives them, and
    whatever the bytes, raises nothing but :class:`InvalidEvent`. The value is either the envelope
    (it has ``schema_version``) or a bare metadata document (it has not; a document may well have
    keys named ``kind`` or ``metadata`` of its own). ``now`` is when the event was published (the
    record's timestamp), so a replay of old events judges them as they were judged live.
    """
    if not value:
        raise InvalidEvent("value: empty message", "value", value)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidEvent(f"value: expected bytes, got {_type_name(value)}", "value", _type_name(value))
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise InvalidEvent(f"value: not JSON ({_one_line(err)})", "value", _show(bytes(value))) from None
    if not isinstance(body, dict):
        raise InvalidEvent(f"value: expected a JSON object, got {_type_name(body)}", "value", _type_name(body))
    if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidEvent(f"key: expected bytes, got {_type_name(key)}", "key", _type_name(key))
    header = _our_headers(headers)

    if VERSION_HEADER in header and header[VERSION_HEADER] != str(SCHEMA_VERSION):
        raise InvalidEvent(
            f"{VERSION_HEADER}: header {_show(header[VERSION_HEADER])} is not supported "
            f"(this reader knows {SCHEMA_VERSION})",
            VERSION_HEADER,
            header[VERSION_HEADER],
        )
    if "schema_version" in body:
        event = _decode_envelope(body, header, now, limits)
        if key is None:
            raise InvalidEvent(f"key: missing (expected the run uuid {event.run.uuid!r})", "key", None)
    else:
        if isinstance(body.get("metadata"), dict) and "uuid" not in body:
            raise InvalidEvent(
                "schema_version: missing (an envelope needs schema_version 1; a bare metadata document, its uuid)",
                "schema_version",
                None,
            )
        event = make_event(body, now=now, limits=limits)
        told = header.get(KIND_HEADER)
        if told is not None and told != event.kind:
            status_key = _Fields(body).get("status")[0]
            raise InvalidEvent(
                f"{KIND_HEADER}: header {_show(told)} disagrees with {status_key} {event.run.status!r}, "
                f"which makes it a {event.kind!r} event",
                KIND_HEADER,
                told,
            )
        key = key or None  # a bare document may come without a key (kcat without -k)
    if key is not None and bytes(key) != event.run.uuid.encode():
        raise InvalidEvent(f"key: {_show(bytes(key))} does not match uuid {event.run.uuid!r}", "key", key)
    return event


def _decode_envelope(body: dict[str, Any], header: Mapping[str, str], now: datetime | None, limits: EventLimits) -> Event:
    version = body["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent(
            f"schema_version: {_show(version)} is not supported (this reader knows {SCHEMA_VERSION})",
            "schema_version",
            version,
        )
    kind = body.get("kind")
    if kind not in KINDS:
        shown = "missing" if kind is None else f"{_show(kind)} is not one of {', '.join(KINDS)}"
        raise InvalidEvent(f"kind: {shown}", "kind", kind)
    if KIND_HEADER in header and header[KIND_HEADER] != kind:
        raise InvalidEvent(
            f"{KIND_HEADER}: header {_show(header[KIND_HEADER])} disagrees with kind {kind!r}", KIND_HEADER, kind
        )
    metadata = body.get("metadata")
    if metadata is None:
        raise InvalidEvent("metadata: missing", "metadata", None)
    return make_event(metadata, kind, now=now, limits=limits)


def _our_headers(headers: Any) -> dict[str, str]:
    """The values of the headers this contract defines, as text. Other headers are not ours to read
    (tracing ids and the like may be any bytes); ours must be UTF-8 and agree when repeated."""
    ours: dict[str, str] = {}
    try:
        entries = list(headers or ())
    except TypeError:
        raise InvalidEvent(f"headers: {_show(headers)} is not a list of headers", "headers", None) from None
    for entry in entries:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise InvalidEvent(f"headers: {_show(entry)} is not a (name, value) pair", "headers", None)
        name, raw = entry
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode("utf-8", "replace")
        if name not in (KIND_HEADER, VERSION_HEADER):
            continue
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise InvalidEvent(f"{name}: header has no value", name, raw)
        try:
            text = bytes(raw).decode()
        except UnicodeDecodeError:
            raise InvalidEvent(f"{name}: header {_show(bytes(raw))} is not UTF-8", name, bytes(raw)) from None
        if ours.setdefault(name, text) != text:
            raise InvalidEvent(f"{name}: header given twice, {_show(ours[name])} and {_show(text)}", name, text)
    return ours


# -- what the report index can store -------------------------------------------------------------


def check_indexable(doc: Mapping[str, Any]) -> None:
    """Refuse a document Elasticsearch would refuse as the report's ``metadata`` (a ``flattened``
    field), or one with a string Lucene cannot index: keys with NUL characters, strings over
    32,766 bytes, key path and value over 32,766 bytes together, objects nested over 20 deep."""
    # Iterative: a document may be nested as deep as the JSON parser allows.
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "document"
        if isinstance(value, Mapping):
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidEvent(
                    f"{_short(where)}: objects nested {depth} deep, more than Elasticsearch's limit of {MAX_DEPTH}",
                    _short(where),
                    None,
                )
            for name, item in value.items():
                name = str(name)
                if _bytes(name) > MAX_TERM_BYTES:
                    raise _too_long(where, f"a key of {_bytes(name):,} bytes")
                if "\0" in name:
                    raise InvalidEvent(
                        f"{_short(where)}: key {_show(name)} contains a NUL character, which Elasticsearch refuses",
                        _short(where),
                        name,
                    )
                stack.append((item, f"{path}.{name}" if path else name, depth))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, path, depth) for item in value)  # arrays add no depth in Elasticsearch
        elif value is not None:
            text = value if isinstance(value, str) else _dumps(value, where).decode()
            size = _bytes(text)
            if size > MAX_TERM_BYTES:
                raise _too_long(where, f"a string of {size:,} bytes")
            if path and _bytes(path) + 1 + size > MAX_TERM_BYTES:
                raise _too_long(where, f"its key path and value take {_bytes(path) + 1 + size:,} bytes together")


def _too_long(where: str, what: str) -> InvalidEvent:
    return InvalidEvent(
        f"{_short(where)}: {what}, more than Lucene's limit of {MAX_TERM_BYTES:,} bytes for one indexed term",
        _short(where),
        None,
    )


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _short(path: str) -> str:
    return path if len(path) <= _SHOW_CHARS else f"{path[:_SHOW_CHARS]}..."


def _uuid(key: str, raw: Any) -> str:
    uuid = _text(key, raw).strip()
    if _bytes(uuid) > MAX_UUID_BYTES:
        raise InvalidEvent(
            f"uuid: {_show(raw)} is {_bytes(uuid):,} bytes, more than the {MAX_UUID_BYTES} of an Elasticsearch id",
            "uuid",
            raw,
        )
    if not _UUID.fullmatch(uuid):
        raise InvalidEvent(f"uuid: {_show(raw)} is not a usable run id (expected {_UUID_RULE})", "uuid", raw)
    return uuid


# -- field access and conversions ----------------------------------------------------------------


class _Fields:
    """Reads canonical fields from a document, remembering which key each came from for errors."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc
        self._camel = any(key in _CAMEL_MARKERS for key in doc)

    def get(self, name: str) -> tuple[str, Any]:
        """(key, value) of the first present key; for an absent field, the key the schema would use."""
        keys = _KEYS[name]
        for key in keys:
            value = self._doc.get(key)
            if not _absent(value):
                return key, value
        return (keys[0] if self._camel else [key for key in keys if key == key.lower()][-1]), None

    def text(self, name: str) -> str | None:
        key, value = self.get(name)
        return None if value is None else _text(key, value)

    def count(self, name: str) -> int | None:
        key, value = self.get(name)
        return None if value is None else _count(key, value)

    def duration(self, name: str) -> float | None:
        key, value = self.get(name)
        return None if value is None else _seconds(key, value)

    def date(self, name: str) -> datetime | None:
        key, value = self.get(name)
        return None if value is None else parse_date(value, key)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _ABSENT)


_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_MAX_COUNT = 2**53  # exact in every JSON reader
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_date(value: Any, field: str = "date") -> datetime:
    """ISO 8601 (with or without fraction, ``Z`` or offset; naive means UTC) or unix seconds -> UTC."""
    if isinstance(value, datetime):
        try:
            return _utc(value)
        except OverflowError:
            raise InvalidEvent(f"{field}: {_show(value)} is not a date (out of range in UTC)", field, value) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value, field, value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_epoch(float(text), field, value)
        match = _ISO.fullmatch(text)
        if match:
            # Normalised by hand because 3.10's fromisoformat knows neither 'Z' nor short fractions.
            fraction = (match["fraction"] or "")[:6].ljust(6, "0")
            zone = match["zone"] or "+00:00"
            zone = "+00:00" if zone.upper() == "Z" else zone
            if ":" not in zone:
                zone = f"{zone[:3]}:{zone[3:]}"
            try:
                return _utc(datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{zone}"))
            except (ValueError, OverflowError):  # e.g. month 13, or year 9999 west of UTC
                pass
    raise InvalidEvent(f"{field}: {_show(value)} is not a date (expected ISO 8601 or unix seconds)", field, value)


def _from_epoch(seconds: float, field: str, raw: Any) -> datetime:
    try:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent(f"{field}: {_show(raw)} is not a date (unix seconds out of range)", field, raw) from None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _status(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidEvent(f"{key}: {_show(raw)} is not a status (expected a string)", key, raw)
    status = raw.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    if status not in ACTIVE_STATUSES and status not in TERMINAL_STATUSES:
        known = ", ".join(sorted(ACTIVE_STATUSES | TERMINAL_STATUSES | _STATUS_ALIASES.keys()))
        raise InvalidEvent(f"{key}: {_show(raw)} is not a known status (expected one of {known})", key, raw)
    return status


def _count(key: str, raw: Any) -> int:
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{key}: {_show(raw)} is not a whole number (expected a count of nodes)", key, raw)
    if value < 0:
        raise InvalidEvent(f"{key}: {_show(raw)} is negative (expected a count of nodes)", key, raw)
    if value > _MAX_COUNT:
        raise InvalidEvent(f"{key}: {_show(raw)} is too large (expected a count of nodes)", key, raw)
    return value


def _seconds(key: str, raw: Any) -> float:
    value: Any = raw
    if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
        value = float(raw.strip())
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidEvent(f"{key}: {_show(raw)} is not a number of seconds", key, raw)
    if value < 0:
        raise InvalidEvent(f"{key}: {_show(raw)} is negative (expected a duration in seconds)", key, raw)
    return float(value)


def _text(key: str, raw: Any) -> str:
    # Numbers are fine as text: YAML and jq readily turn a version like 4.16 into a number.
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise InvalidEvent(f"{key}: {_show(raw)} is not a string", key, raw)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_date(value)
    return value


def format_date(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the way the reports and Elasticsearch queries want it."""
    return _utc(value).isoformat().replace("+00:00", "Z")


def _dumps(obj: Any, field: str) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)
    except TypeError as err:  # orjson.JSONEncodeError is a TypeError
        raise InvalidEvent(f"{field}: cannot be written as JSON ({_one_line(err)})", field, None) from None


def _check_size(encoded: bytes, field: str) -> None:
    if len(encoded) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"{field}: {len(encoded):,} bytes encoded, more than the {MAX_EVENT_BYTES:,} allowed",
            field,
            len(encoded),
        )


def _show(value: Any) -> str:
    """A short one-line repr, so a 2 MB value cannot flood a log line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4,300 digits
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOW_CHARS else f"{text[:_SHOW_CHARS]}...({len(text):,} chars)"


def _span(delta: timedelta) -> str:
    """A duration as people say it: '90 s', '42 min', '36 h', '8.2 days', '8,030 years'."""
    seconds = delta.total_seconds()
    for unit, size, below in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172_800), ("days", 86400, 63_115_200)):
        if seconds < below:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 31_557_600:,.0f} years"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _type_name(value: Any) -> str:
    return {list: "an array", tuple: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


__all__ = [
    "DEFAULT_LIMITS",
    "FINISHED",
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_TERM_BYTES",
    "MAX_UUID_BYTES",
    "SCHEMA_VERSION",
    "STARTED",
    "Event",
    "EventLimits",
    "InvalidEvent",
    "Message",
    "Run",
    "check_indexable",
    "decode_event",
    "encode_event",
    "format_date",
    "make_event",
    "parse_date",
    "parse_run",
]
