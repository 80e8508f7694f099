"""What `report-consumer` says when it cannot start: one line naming the cause and what to do, exit 2
for what retrying cannot fix; and a signal during start-up ends it at once."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from consumer.settings import Settings
from tests.support.consumer import command, settings_env
from tests.support.prometheus import BASIC_AUTH_USER
from tests.support.secure import SecureServers
from tests.support.services import closed_port


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("verb", ["run", "replay"])
async def test_a_missing_runs_topic_is_one_line_naming_it_and_init(settings: Settings, unique: str, es, verb: str):
    missing = f"missing-runs-{unique}"
    result = await command("consumer.cli", verb, env=settings_env(settings, RUNS_TOPIC=missing), timeout=60)
    assert result.code == 2
    line = one_line(result.err)
    assert missing in line and "report-consumer init" in line and "Traceback" not in result.err
    assert not await es.indices.exists(index=settings.report_index), "nothing is created before the checks pass"


async def _wait_for_line(stream: asyncio.StreamReader, needle: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(stream.readline(), deadline - time.monotonic())).decode()
        seen.append(line)
        if needle in line:
            return "".join(seen)
        if not line:
            break
    raise AssertionError(f"{needle!r} never logged:\n{''.join(seen)}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("waiting_for", ["kafka", "elasticsearch"])
async def test_a_signal_during_start_up_ends_the_consumer_promptly(settings: Settings, signum: int, waiting_for: str):
    """Start-up waits for a server that is away (Kafka: as long as it takes; Elasticsearch: through
    its retries); a signal ends the wait at once, whatever the backoff."""
    away = f"127.0.0.1:{closed_port()}"
    extra = {"RETRY_ATTEMPTS": "50", "RETRY_MAX_WAIT": "30"}
    if waiting_for == "kafka":
        extra["KAFKA_BOOTSTRAP_SERVERS"], needle = away, "Kafka unavailable"
    else:
        extra["ES_SERVER"], needle = f"http://{away}", "Elasticsearch unavailable"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", "run", env=settings_env(settings, **extra),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        await _wait_for_line(process.stderr, needle, timeout=60)
        await asyncio.sleep(1.0)  # well into a backoff
        sent = time.monotonic()
        process.send_signal(signum)
        rest = await asyncio.wait_for(process.stderr.read(), 10)
        code = await asyncio.wait_for(process.wait(), 10)
        took = time.monotonic() - sent
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 128 + signum and took < 5
    assert f"stopped by {signal.Signals(signum).name}" in rest.decode() and "Traceback" not in rest.decode()


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["init", "run", "replay"])
async def test_a_wrong_scram_password_is_named_as_such_not_as_unreachable(secure: SecureServers, settings: Settings, verb: str):
    env = settings_env(settings, **secure.kafka_env(password="not-the-scram-password"))
    result = await command("consumer.cli", verb, env=env, timeout=60)
    assert result.code == 2
    line = one_line(result.err)
    assert "Kafka refused the credentials" in line and "authentication failed for user 'reports'" in line
    assert "KAFKA_SASL_PASSWORD" in line
    assert "cannot reach" not in line and "not-the-scram-password" not in result.out + result.err


@pytest.mark.slow
async def test_a_right_scram_password_gets_past_the_checks(secure: SecureServers, settings: Settings, unique: str):
    env = settings_env(settings, **secure.kafka_env(), RUNS_TOPIC=f"scram-runs-{unique}")
    result = await command("consumer.cli", "init", "--partitions", "1", env=env, timeout=120)
    assert result.code == 0, result.err
    assert f"topic scram-runs-{unique}: created" in result.out


@pytest.mark.parametrize("verb", ["run", "backfill"])
async def test_thanos_refusing_the_credentials_in_its_url_stops_start_up_in_one_line(
    basic_auth_prometheus: str, settings: Settings, verb: str
):
    thanos = basic_auth_prometheus.replace("http://", f"http://{BASIC_AUTH_USER}:wrong-thanos-password@")
    result = await command("consumer.cli", verb, env=settings_env(settings, THANOS_URL=thanos), timeout=60)
    assert result.code == 2
    line = one_line(result.err)
    assert f"Thanos at {basic_auth_prometheus}: refused the credentials (HTTP 401)" in line and "THANOS_URL" in line
    assert "wrong-thanos-password" not in result.out + result.err


async def test_elasticsearch_answering_401_is_named_as_refused_credentials(basic_auth_prometheus: str, settings: Settings):
    """The local Elasticsearch runs without security, so the server that refuses the credentials
    here is another one that enforces HTTP basic auth: the client meets the same 401."""
    es = basic_auth_prometheus.replace("http://", "http://reports:wrong-es-password@")
    result = await command("consumer.cli", "init", env=settings_env(settings, ES_SERVER=es), timeout=60)
    assert result.code == 2
    line = one_line(result.err)
    assert f"Elasticsearch at {basic_auth_prometheus} refused the credentials (HTTP 401)" in line
    assert "cannot reach" not in line and "wrong-es-password" not in result.out + result.err
