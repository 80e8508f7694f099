"""``report-consumer``: create what the product owns, run the live consumer, rebuild reports."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from consumer.report import iso
from consumer.settings import Settings
from consumer.views import VIEW_COMMANDS, NotFound, add_view_commands
from producer_hooks import redaction
from producer_hooks.redaction import Redactor
from producer_hooks.settings import SettingsError

if TYPE_CHECKING:  # the commands import what they need when they run, so --help stays quick
    from consumer.origin import Delivery
    from consumer.outage import OutageObserver
    from consumer.pipeline import Pipeline
    from consumer.rebuild import Summary

log = logging.getLogger("consumer")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="report-consumer",
        description="Turn finished performance CI runs into report documents in Elasticsearch. "
        "Settings come from environment variables (see README); flags override some of them.",
    )
    root.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the runs topic, the dead-letter topic and the report index")
    init.add_argument("--partitions", type=positive, default=6, help="partitions of the runs topic (default 6)")
    init.add_argument("--replication", type=positive, default=1, help="replication factor of both topics (default 1)")

    run = commands.add_parser("run", help="consume run events and write reports, until SIGTERM or SIGINT")
    run.add_argument("--max-in-flight", type=positive, help="runs built at once (MAX_IN_FLIGHT)")
    run.add_argument("--group", help="consumer group (REPORT_GROUP)")
    run.add_argument("--http-port", type=port_number, help="serve /healthz, /readyz and /metrics on this port "
                     "(HTTP_PORT; 0: no server)")

    replay = commands.add_parser("replay", help="rebuild the reports of the runs in the runs topic")
    replay.add_argument("--since", type=iso_time, help="only events published at or after this ISO 8601 time")
    replay.add_argument("--uuid", action="append", default=[], help="only this run (repeatable)")
    replay.add_argument("--stale-only", action="store_true", help="only runs whose report is missing or outdated")
    replay.add_argument("--dry-run", action="store_true", help="list the runs that would be rebuilt")
    replay.add_argument("--max-in-flight", type=positive, help="reports built at once (MAX_IN_FLIGHT)")

    backfill = commands.add_parser("backfill", help="build reports for the runs in the metadata index")
    backfill.add_argument("--days", type=positive, default=14, help="runs of the last N days (default 14)")
    backfill.add_argument("--uuid", action="append", default=[], help="only this run (repeatable; ignores --days)")
    backfill.add_argument("--stale-only", action="store_true", help="only runs whose report is missing or outdated")
    backfill.add_argument("--dry-run", action="store_true", help="list the runs that would be built")
    backfill.add_argument("--max-in-flight", type=positive, help="reports built at once (MAX_IN_FLIGHT)")
    add_view_commands(commands)

    ack = commands.add_parser("ack", help="acknowledge a known change of a judged number in a run")
    ack.add_argument("uuid", help="the run (uuid or unique prefix) whose change is known")
    ack.add_argument("--metric", required=True, help="the judged number, as `show` names it (or a glob of names)")
    ack.add_argument("--reason", required=True, help="why it is known: a bug link, an expected change")
    acks = commands.add_parser("acks", help="list acknowledgements, newest first")
    acks.add_argument("--uuid", action="append", default=[], help="only this run's (repeatable)")
    acks.add_argument("--json", action="store_true", help="one JSON array")
    return root


def iso_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2024-05-02T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    # The transport warns once per failed request; an outage is told by consumer.outage instead.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    # Before anything can log: URL userinfo and Authorization values are masked from the start,
    # the secret values themselves once the settings are read.
    redacting = redaction.install(Redactor())
    settings = None
    try:
        settings = Settings.from_env()
        redacting.redactor = Redactor.of(settings.secrets())
        if getattr(args, "max_in_flight", None):
            settings = dataclasses.replace(settings, max_in_flight=args.max_in_flight)
        if getattr(args, "group", None):
            settings = dataclasses.replace(settings, group=args.group)
        if getattr(args, "http_port", None) is not None:
            settings = dataclasses.replace(settings, http_port=args.http_port)
        command = {"init": init, "run": run, "replay": replay, "backfill": backfill, "ack": ack, "acks": acks,
                   **VIEW_COMMANDS}[args.command]
        return asyncio.run(_supervised(command, settings, args))
    except KeyboardInterrupt:  # before the command's own signal handling was in place
        return 128 + signal.SIGINT
    except Exception as err:  # noqa: BLE001 - every failure ends as one (redacted) line or a logged traceback
        explained = explain(err, settings)
        if explained is None:
            log.critical("unexpected failure", exc_info=True)
            return 1
        code, line = explained
        print(f"report-consumer: {redacting.redactor(line)}", file=sys.stderr)
        return code


def explain(err: Exception, settings: Settings | None) -> tuple[int, str] | None:
    """The exit status and one line for a failure a user can act on; ``None`` for a bug.

    2: retrying cannot fix it (settings, credentials, certificates, a missing topic); 1: a server is
    away, try again later.
    """
    from aiokafka.errors import KafkaConnectionError
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import TlsError
    from elasticsearch import AuthenticationException, AuthorizationException

    from consumer.comparisons import ComparisonError
    from consumer.outage import OutageLimitExceeded
    from consumer.preflight import Fatal
    from consumer.profiles import ProfileError
    from consumer.topics import MissingTopic
    from producer_hooks.kafka_check import KafkaUnreachable

    es_url = settings.es.url if settings else "ES_SERVER"
    if isinstance(err, OutageLimitExceeded) and isinstance(err.__cause__, Exception):
        inner = explain(err.__cause__, settings)
        if inner is not None:
            return 1, f"{inner[1]} (waited OUTAGE_LIMIT={settings.outage_limit_s if settings else '?'} s)"
    if isinstance(err, (SettingsError, ProfileError, ComparisonError, Fatal, MissingTopic)):
        return 2, str(err)
    if isinstance(err, NotFound):
        return 1, str(err)
    if isinstance(err, AuthenticationException):
        return 2, (f"Elasticsearch at {es_url} refused the credentials (HTTP 401); check the user:password in "
                   "ES_SERVER, ES_USERNAME/ES_PASSWORD or ES_API_KEY")
    if isinstance(err, AuthorizationException):
        return 2, f"Elasticsearch at {es_url} denied access (HTTP 403): {err.message}; check the user's privileges"
    if isinstance(err, TlsError):
        return 2, f"TLS with Elasticsearch at {es_url} failed ({err.message}); check ES_CA_CERTS and ES_VERIFY_CERTS"
    if isinstance(err, (KafkaConnectionError, KafkaUnreachable)):
        where = settings.kafka.bootstrap_servers if settings else "KAFKA_BOOTSTRAP_SERVERS"
        return 1, f"cannot reach Kafka at {where} ({err}); check KAFKA_BOOTSTRAP_SERVERS and that the broker is up"
    if isinstance(err, TransportConnectionError):
        return 1, f"cannot reach Elasticsearch at {es_url} ({err}); check ES_SERVER and that the cluster is up"
    return None


class Signals:
    """SIGTERM and SIGINT for a command running as ``task``.

    Until the command declares it can stop cleanly (``graceful``), a signal cancels it at once, so
    start-up (waiting for a server, backing off between retries) never holds a signal back. From
    then on the first signal sets ``stop`` and a second one cancels.
    """

    def __init__(self, task: asyncio.Task) -> None:
        self.stop = asyncio.Event()
        self.graceful = False
        self.received: int | None = None
        self._task = task

    def __call__(self, signum: int) -> None:
        first = self.received is None
        self.received = signum
        if self.graceful and first:
            self.stop.set()
        else:
            self._task.cancel()


async def _supervised(command: Callable[[Settings, argparse.Namespace, Signals], Awaitable[int]],
                      settings: Settings, args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    signals = Signals(task)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals, signum)
    try:
        return await command(settings, args, signals)
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        print(f"report-consumer: stopped by {signal.Signals(signals.received).name}", file=sys.stderr)
        return 128 + signals.received


async def init(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    from consumer.elastic import connect
    from consumer.preflight import kafka_ready
    from consumer.sink import ensure_report_index
    from consumer.topics import TopicSpec, ensure_topics

    await kafka_ready(settings.kafka, settings.retry)
    created = await ensure_topics(settings.kafka, {
        settings.kafka.topic: TopicSpec(args.partitions, args.replication),
        settings.dead_letter_topic: TopicSpec(1, args.replication),
    })
    es = connect(settings.es)
    try:
        index_created = await ensure_report_index(es, settings.report_index, settings.retry)
    finally:
        await es.close()
    for topic in (settings.kafka.topic, settings.dead_letter_topic):
        print(f"topic {topic}: {'created' if topic in created else 'exists'}")
    print(f"index {settings.report_index}: {'created' if index_created else 'exists'}")
    return 0


async def run(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    from consumer.deadletter import DeadLetters
    from consumer.health import serving
    from consumer.pipeline import Pipeline
    from consumer.preflight import thanos_accepts
    from consumer.telemetry import Telemetry
    from consumer.worker import Worker

    telemetry = Telemetry()
    async with serving(settings, telemetry):  # from the start, so that a waiting start-up is seen as alive
        # A service waits for Kafka to come up; anything that waiting cannot fix ends start-up here.
        await _wait_for_kafka(settings, telemetry)
        await thanos_accepts(settings.thanos)
        async with Pipeline.open(settings) as pipeline:
            pipeline.outages.observer = telemetry
            dead_letters = DeadLetters(settings)  # its producer is made here: one never started is never closed
            await dead_letters.start()
            try:
                signals.graceful = True  # the worker drains and commits when `stop` is set
                await Worker(settings, pipeline, dead_letters, telemetry).run(signals.stop)
            finally:
                await dead_letters.stop()
    log.info("stopped")
    return 0


async def replay(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    from consumer.preflight import thanos_accepts
    from consumer.replay import finished_runs_in_topic

    await _wait_for_kafka(settings)
    await thanos_accepts(settings.thanos)

    async def find(pipeline: Pipeline, summary: Summary) -> Mapping[str, Delivery]:
        return await finished_runs_in_topic(settings, summary, since=args.since, uuids=set(args.uuid))

    return await _rebuild(settings, args, "replay", find)


async def backfill(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    from consumer.backfill import finished_runs_in_index
    from consumer.preflight import thanos_accepts

    await thanos_accepts(settings.thanos)

    async def find(pipeline: Pipeline, summary: Summary) -> Mapping[str, Delivery]:
        return await finished_runs_in_index(pipeline.es, settings.metadata_index, args.days, settings.retry,
                                            summary, uuids=set(args.uuid), limits=settings.limits)

    return await _rebuild(settings, args, "backfill", find)


async def ack(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    import fnmatch
    import getpass

    from consumer.acks import add_ack
    from consumer.elastic import connect
    from consumer.views import find_report

    reason = " ".join(args.reason.split())
    if not reason:
        raise SettingsError("--reason is empty: say why the change is known (a bug link, an expected change)")
    async with connect(settings.es) as es:
        report = await find_report(es, settings.report_index, args.uuid)
        judged = [str(entry.get("name")) for entry in (report.get("verdict") or {}).get("numbers") or ()]
        matched = [name for name in judged if fnmatch.fnmatchcase(name, args.metric)]
        if judged and not matched:
            shown = ", ".join(judged[:6]) + (", ..." if len(judged) > 6 else "")
            raise NotFound(f"run {report['uuid']} has no judged number {args.metric!r}; its numbers: {shown} "
                           "(see `report-consumer show`)")
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = None
        await add_ack(es, settings.acks_index, report["uuid"], args.metric, reason, user,
                      datetime.now(timezone.utc), settings.retry)
    print(f"acknowledged {', '.join(matched) or args.metric} of run {report['uuid']}: {reason}")
    print("later verdicts treat it as the expected level; rebuild this run's report with "
          f"`report-consumer replay --uuid {report['uuid']}` to update its own verdict")
    return 0


async def acks(settings: Settings, args: argparse.Namespace, signals: Signals) -> int:
    import json

    from consumer.acks import list_acks
    from consumer.elastic import connect
    from consumer.views import fit, when

    async with connect(settings.es) as es:
        found = await list_acks(es, settings.acks_index, settings.retry, uuids=args.uuid)
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    elif not found:
        print("no acknowledgements")
    else:
        for doc in found:
            print(fit(f"{when(doc.get('created_at'))[:16]}  {doc.get('uuid')}  {doc.get('metric')}", 80))
            print(fit(f"    {doc.get('reason')}" + (f" ({doc['by']})" if doc.get("by") else ""), 80))
    return 0


async def _wait_for_kafka(settings: Settings, observer: OutageObserver | None = None) -> None:
    """Kafka being away is an outage like any other: waited out (up to OUTAGE_LIMIT), told once per
    interval; what waiting cannot fix (credentials, a missing topic) ends start-up at once."""
    from consumer.outage import Outages
    from consumer.preflight import kafka_ready
    from consumer.retry import RetryPolicy

    outages = Outages(limit_s=settings.outage_limit_s, max_wait_s=settings.retry_max_wait_s, observer=observer)
    await outages.ride_out(lambda: kafka_ready(settings.kafka, RetryPolicy(attempts=1), settings.kafka.topic),
                           "connecting to Kafka")


async def _rebuild(settings: Settings, args: argparse.Namespace, label: str,
                   find: Callable[[Pipeline, Summary], Awaitable[Mapping[str, Delivery]]]) -> int:
    """What replay and backfill share once they have found their runs."""
    from consumer.pipeline import Pipeline
    from consumer.rebuild import Summary, rebuild, stale_only

    summary = Summary()
    async with Pipeline.open(settings) as pipeline:
        runs = await pipeline.outages.ride_out(lambda: find(pipeline, summary), f"reading the runs to {label}")
        summary.runs = len(runs)
        if args.stale_only:
            every = runs
            runs = await pipeline.outages.ride_out(lambda: stale_only(pipeline, every), "reading stored reports")
            summary.skip("report up to date", len(every) - len(runs))
        if args.dry_run:
            for delivery in runs.values():
                run_ = delivery.event.run
                print(f"{run_.uuid}\t{run_.benchmark}\t{run_.cluster_name}\t{run_.status}\t{iso(run_.end)}")
        else:
            await rebuild(pipeline, runs.values(), summary, label=label)
    for line in summary.lines(label):
        print(line)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
