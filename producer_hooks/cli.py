"""``report-hook``: publish a run's metadata event from a pipeline step, or flush the spool.

Exit status: 0 when the event was delivered, and also when Kafka was unreachable and the event was
spooled (with a one-line warning on stderr: a pipeline must not fail because reporting is down);
1 when Kafka refused the event, or refused our credentials (the event is spooled: waiting will not
help, someone must fix the settings), or ``flush`` left events in the spool; 2 for bad input or
settings, including a run window the consumer would refuse (before 2000, in the future, too long).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import orjson

from producer_hooks import redaction
from producer_hooks.events import KINDS, Event, InvalidEvent, encode_event, make_event
from producer_hooks.publisher import PublishError, PublishResult, flush_sync, publish_sync
from producer_hooks.redaction import Redactor
from producer_hooks.settings import HookSettings, SettingsError, limits_from_env

PROG = "report-hook"

# The Airflow-era (snake_case) fields that ``--from-env`` reads. Each comes from the upper-case
# variable (CLUSTER_NAME), or else from the lower-case one, as index.sh names its shell variables.
ENV_FIELDS = (
    "uuid", "release_stream", "platform", "cluster_name", "cluster_version", "network_type", "build_tag",
    "node_name", "job_status", "build_url", "upstream_job", "upstream_job_build", "execution_date",
    "job_duration", "start_date", "end_date", "timestamp", "master_count", "worker_count", "infra_count",
    "workload_count", "total_count", "master_type", "worker_type", "infra_type", "workload_type",
)  # fmt: skip

# What Airflow exports to every task's environment, used when the field's own variable is unset.
AIRFLOW_FALLBACKS = {
    "build_tag": "AIRFLOW_CTX_TASK_ID",
    "upstream_job": "AIRFLOW_CTX_DAG_ID",
    "execution_date": "AIRFLOW_CTX_EXECUTION_DATE",
}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _BadInput(Exception):
    """Input the user must fix; the message is the one line to print."""


def document_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """A snake_case metadata document from the variables a pipeline step exports (see ``--help``)."""
    doc: dict[str, str] = {}
    for name in ENV_FIELDS:
        for variable in (name.upper(), name, AIRFLOW_FALLBACKS.get(name)):
            value = env.get(variable) if variable else None
            if value is not None and value.strip():
                doc[name] = value.strip()
                break
    if "upstream_job_build" not in doc:
        parts = [env.get(f"AIRFLOW_CTX_{part}", "").strip() for part in ("DAG_ID", "DAG_RUN_ID", "TASK_ID")]
        if all(parts):
            doc["upstream_job_build"] = "/".join(parts)  # as index.sh builds it
    return doc


def _env_help() -> str:
    fields = ", ".join(name.upper() for name in ENV_FIELDS)
    fallbacks = ", ".join(f"{name} <- {variable}" for name, variable in AIRFLOW_FALLBACKS.items())
    return (
        f"--from-env builds a snake_case metadata document from these variables: {fields}. "
        "Each field is read from its upper-case variable, or else from the lower-case one "
        f"(uuid, cluster_name, ... as index.sh names them). When unset: {fallbacks}, and "
        "upstream_job_build <- AIRFLOW_CTX_DAG_ID/AIRFLOW_CTX_DAG_RUN_ID/AIRFLOW_CTX_TASK_ID. "
        "Kafka settings: KAFKA_BOOTSTRAP_SERVERS, RUNS_TOPIC, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, "
        "KAFKA_SSL_*; spool: REPORT_HOOK_SPOOL; timeout: REPORT_HOOK_TIMEOUT (seconds); longest run window "
        "accepted: RUN_WINDOW_MAX_HOURS (default 168, as the consumer's)."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Publish performance-CI run events to Kafka.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the Kafka client does")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    publish = commands.add_parser(
        "publish",
        help="publish a run's metadata document",
        description="Publish a run's metadata document (either schema) as a run event. "
        "When Kafka cannot be reached the event is spooled and sent by the next publish or flush.",
        epilog=_env_help(),
    )
    source = publish.add_mutually_exclusive_group()
    source.add_argument("file", nargs="?", metavar="FILE", help="metadata JSON document; - or nothing for stdin")
    source.add_argument("--from-env", action="store_true", help="build the document from environment variables")
    publish.add_argument("--kind", choices=KINDS, help="event kind (default: finished if the status is terminal)")
    publish.add_argument("--dry-run", action="store_true", help="print the normalised event, publish nothing")

    commands.add_parser(
        "flush",
        help="send the spooled events",
        description="Send the events spooled while Kafka was unreachable, oldest first. "
        "Exits 1 if some remain in the spool.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_logging(args.verbose)
    redacting = redaction.install(Redactor())  # secret values join once the settings are read
    try:
        if args.command == "flush":
            return _flush(_settings(redacting))
        # A dry run needs no Kafka settings, only the limits the consumer would apply.
        settings = None if args.dry_run else _settings(redacting)
        limits = settings.limits if settings else limits_from_env(os.environ)
        event = make_event(_read_document(args), args.kind, now=datetime.now(timezone.utc), limits=limits)
        if settings is None:
            _print_event(event)
            return EXIT_OK
        return _publish(event, settings)
    except InvalidEvent as err:
        return _fail(EXIT_BAD_INPUT, f"invalid event: {err}")
    except (SettingsError, _BadInput) as err:
        return _fail(EXIT_BAD_INPUT, redacting.redactor(str(err)))
    except PublishError as err:
        return _fail(EXIT_FAILED, redacting.redactor(str(err)))
    except KeyboardInterrupt:
        return 130


def _settings(redacting: redaction.RedactingFilter) -> HookSettings:
    settings = HookSettings.from_env()
    redacting.redactor = Redactor.of(settings.secrets())
    return settings


def _read_document(args: argparse.Namespace) -> object:
    if args.from_env:
        return document_from_env(os.environ)
    name = args.file or "-"
    try:
        if name == "-":
            name = "stdin"
            raw = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as file:
                raw = file.read()
    except OSError as err:
        raise _BadInput(f"cannot read {name}: {err.strerror or err}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise _BadInput(f"{name} is not JSON: {' '.join(str(err).split())}") from None


def _publish(event: Event, settings: HookSettings) -> int:
    result = publish_sync(event, settings)
    what = f"{event.kind} event of run {event.run.uuid}"
    if result.spooled and result.credentials_refused:
        return _fail(
            EXIT_FAILED,
            f"Kafka refused the credentials ({result.reason}); {what} spooled to {settings.spool_path} "
            f"({result.pending} pending); fix the KAFKA_SASL_* settings, then `{PROG} flush`",
        )
    if result.spooled:
        _warn(
            f"Kafka unavailable ({result.reason}); {what} spooled to {settings.spool_path} "
            f"({result.pending} pending, sent by the next publish or `{PROG} flush`)"
        )
    else:
        earlier = f" after {result.delivered - 1} spooled event(s)" if result.delivered > 1 else ""
        print(f"published {what} to {settings.kafka.topic}{earlier}")
    return EXIT_OK


def _flush(settings: HookSettings) -> int:
    result: PublishResult = flush_sync(settings)
    if result.pending and result.credentials_refused:
        return _fail(
            EXIT_FAILED,
            f"Kafka refused the credentials ({result.reason}); {result.delivered} event(s) sent, "
            f"{result.pending} still spooled in {settings.spool_path}; fix the KAFKA_SASL_* settings",
        )
    if result.pending:
        _warn(
            f"Kafka unavailable ({result.reason}); {result.delivered} event(s) sent, "
            f"{result.pending} still spooled in {settings.spool_path}"
        )
        return EXIT_FAILED
    print(f"flushed {result.delivered} event(s) to {settings.kafka.topic}; spool empty")
    return EXIT_OK


def _print_event(event: Event) -> None:
    message = encode_event(event)  # also applies the size limit, as a real publish would
    shown = {
        "key": message.key.decode(),
        "headers": {name: value.decode() for name, value in message.headers},
        "value": orjson.loads(message.value),
    }
    sys.stdout.buffer.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def _quiet_logging(verbose: bool) -> None:
    # Outcomes are reported as one line each below; the Kafka client's own connection errors would
    # otherwise reach stderr through logging's last-resort handler.
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        logging.getLogger().addHandler(logging.NullHandler())


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
