"""``report-consumer``: create what the product owns, run the live consumer, rebuild reports."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence

from consumer.profiles import ProfileError
from consumer.settings import Settings
from producer_hooks.settings import SettingsError

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
    init.add_argument("--partitions", type=int, default=6, help="partitions of the runs topic (default 6)")
    init.add_argument("--replication", type=int, default=1, help="replication factor of both topics (default 1)")

    run = commands.add_parser("run", help="consume run events and write reports, until SIGTERM or SIGINT")
    run.add_argument("--max-in-flight", type=int, help="runs built at once (MAX_IN_FLIGHT)")
    run.add_argument("--group", help="consumer group (REPORT_GROUP)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if getattr(args, "max_in_flight", None):
            settings = dataclasses.replace(settings, max_in_flight=args.max_in_flight)
        if getattr(args, "group", None):
            settings = dataclasses.replace(settings, group=args.group)
        command = {"init": init, "run": run}[args.command]
        return asyncio.run(command(settings, args))
    except (SettingsError, ProfileError) as err:
        print(f"report-consumer: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def init(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.elastic import connect
    from consumer.sink import ensure_report_index
    from consumer.topics import TopicSpec, ensure_topics

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


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.deadletter import DeadLetters
    from consumer.pipeline import Pipeline
    from consumer.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    dead_letters = DeadLetters(settings)
    async with Pipeline.open(settings) as pipeline:
        await dead_letters.start()
        try:
            await Worker(settings, pipeline, dead_letters).run(stop)
        finally:
            await dead_letters.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
