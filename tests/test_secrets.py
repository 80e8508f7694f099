"""Secrets never leave: every secret the settings can hold gets a distinct value, the real commands run
with them (servers up, servers away, settings refused), and everything a user can see is searched for
each one: standard output and error, logs, dead-letter headers and values, the report index.

The local Elasticsearch runs without security and Prometheus without auth, so credentials sent to
them are ignored: the happy path runs with credentials everywhere and reports must still come out.
Thanos is also served by a Prometheus that answers only with HTTP basic auth, so metrics in a report
prove the credentials taken out of THANOS_URL are sent."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from elasticsearch import AsyncElasticsearch

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import publish
from producer_hooks.settings import HookSettings
from tests.support.consumer import Completed, command, running_consumer, settings_env, wait_for_reports
from tests.support.es import index_docs
from tests.support.kafka import read_topic
from tests.support.metadata import run_doc
from tests.support.prometheus import BASIC_AUTH_PASSWORD, BASIC_AUTH_USER
from tests.support.services import closed_port

ES_USER, ES_URL_PASSWORD = "es-url-user", "es-url-Pw@9x"  # an unencoded "@" in a URL's password
ES_FILE_PASSWORD = "es-file-Pw-5e"
ES_API_KEY = "es-api-Key-6f"
THANOS_TOKEN = "thanos-token-Val-3c"
THANOS_FILE_TOKEN = "thanos-file-Token-2b"
KAFKA_PASSWORD = "kafka-sasl-Pw-7g"
KAFKA_FILE_PASSWORD = "kafka-file-Pw-8h"
CI_TOKEN = "ci-build-Token-1a"  # in a build_url a pipeline put in the run's metadata

SECRETS = (ES_USER, ES_URL_PASSWORD, ES_FILE_PASSWORD, ES_API_KEY, THANOS_TOKEN, THANOS_FILE_TOKEN, KAFKA_PASSWORD,
           KAFKA_FILE_PASSWORD, CI_TOKEN, BASIC_AUTH_USER, BASIC_AUTH_PASSWORD)
# What a leak could look like besides the value itself: percent-encoded in a URL, or in a basic-auth header.
FORMS = {
    *SECRETS,
    *(quote(secret, safe="") for secret in SECRETS),
    *(base64.b64encode(f"{user}:{password}".encode()).decode()
      for user, password in ((ES_USER, ES_URL_PASSWORD), (BASIC_AUTH_USER, BASIC_AUTH_PASSWORD), ("reports", ES_FILE_PASSWORD))),
}

PROBE_PROFILE = "name: probe\nversion: 1\nqueries:\n  - name: one\n    query: absent(no_such_series{$cluster})\n"


def leaked(*texts: str) -> set[str]:
    """The secrets (in any form) found in ``texts``."""
    seen = "\n".join(texts)
    return {form for form in FORMS if form in seen}


def with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("://", f"://{user}:{password}@", 1)


@pytest.fixture
def base_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The test's own topics and indices, a metric profile any Prometheus answers, no waiting for results."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "probe.yaml").write_text(PROBE_PROFILE)
    return settings_env(settings, PROFILE_DIR=str(profiles), BENCHMARK_PROFILES="*=probe", RESULTS_DEADLINE="1",
                        RETRY_ATTEMPTS="2", RETRY_MAX_WAIT="0.5")


@pytest.fixture
def in_urls(settings: Settings, basic_auth_prometheus: str) -> dict[str, str]:
    """Credentials inside ES_SERVER and THANOS_URL (the Prometheus that wants basic auth), and a SASL
    password Kafka (PLAINTEXT here) never asks for."""
    return {"ES_SERVER": with_userinfo(settings.es.url, ES_USER, ES_URL_PASSWORD),
            "THANOS_URL": with_userinfo(basic_auth_prometheus, BASIC_AUTH_USER, BASIC_AUTH_PASSWORD),
            "KAFKA_SASL_USERNAME": "reports", "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD}


@pytest.fixture
def in_files(tmp_path: Path) -> dict[str, str]:
    """Credentials from files (the local Prometheus ignores the bearer token)."""
    files = {"ES_PASSWORD_FILE": ES_FILE_PASSWORD, "THANOS_TOKEN_FILE": THANOS_FILE_TOKEN,
             "KAFKA_SASL_PASSWORD_FILE": KAFKA_FILE_PASSWORD}
    env = {"ES_USERNAME": "reports", "KAFKA_SASL_USERNAME": "reports"}
    for name, value in files.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env[name] = str(path)
    return env


IN_VARIABLES = {"ES_API_KEY": ES_API_KEY, "THANOS_TOKEN": THANOS_TOKEN, "KAFKA_SASL_USERNAME": "reports",
                "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD}


def finished_doc(uuid: str, cluster: str, **changes: object) -> dict:
    end = int(time.time()) - 600
    return {**run_doc(uuid, cluster=cluster, benchmark="mystery-bench", status="success", start=end - 600, end=end),
            **changes}


async def report_index_text(es: AsyncElasticsearch, index: str) -> str:
    await es.indices.refresh(index=index)
    hits = (await es.search(index=index, size=100, query={"match_all": {}}))["hits"]["hits"]
    return json.dumps(hits)


async def dead_letter_text(settings: Settings, count: int, timeout: float) -> tuple[str, str]:
    """The dead-letter topic as text: (reason headers, everything: keys, values and all headers)."""
    records = await read_topic(settings.kafka, settings.dead_letter_topic, count, timeout=timeout)
    reasons = [value.decode(errors="replace") for record in records for key, value in record.headers
               if key == "dead-letter-reason"]
    everything = [f"{record.key!r} {record.value.decode(errors='replace')} "
                  + " ".join(f"{key}={value.decode(errors='replace')}" for key, value in record.headers)
                  for record in records]
    return "\n".join(reasons), "\n".join(everything)


def shown(result: Completed) -> str:
    return result.out + result.err


@pytest.mark.slow
async def test_reports_come_out_with_credentials_everywhere_and_no_output_or_document_holds_one(
    settings: Settings, base_env: dict, in_urls: dict, in_files: dict, es, hook_settings: HookSettings, unique: str,
    tmp_path: Path,
):
    init = await command("consumer.cli", "--log-level", "DEBUG", "init", env={**base_env, **in_urls})
    assert init.code == 0, init.err

    uuid, cluster = f"{unique}-secret", f"cluster-{unique}"
    doc = finished_doc(uuid, cluster, build_url=f"https://ci-bot:{CI_TOKEN}@ci.example.com/job/7")
    assert not (await publish(make_event(doc), hook_settings)).spooled
    async with running_consumer(settings, tmp_path / "run.log", "--log-level", "DEBUG", **{**base_env, **in_urls}) as consumer:
        reports = await wait_for_reports(es, settings.report_index, {uuid}, timeout=90, consumer=consumer)
        assert await consumer.stop() == 0
    report = reports[uuid]
    # Only basic auth gets an answer from that Prometheus: the credentials left the URL and were sent.
    [series] = [m for m in report["metrics"] if m["name"] == "one"]
    assert (series["labels"], series["avg"], series["max"]) == ({"openshift_cluster_name": cluster}, 1.0, 1.0)
    assert report["metadata"]["build_url"] == report["build_url"] == "https://***@ci.example.com/job/7"

    replay = await command("consumer.cli", "--log-level", "DEBUG", "replay", env={**base_env, **in_files})
    assert replay.code == 0, replay.err
    await index_docs(es, settings.metadata_index, [doc])
    backfill = await command("consumer.cli", "--log-level", "DEBUG", "backfill", "--uuid", uuid,
                             env={**base_env, **IN_VARIABLES})
    assert backfill.code == 0, backfill.err
    # The same reports again: credentials from files and variables reached the same servers.
    assert "unchanged: 1" in replay.out.splitlines() and "unchanged: 1" in backfill.out.splitlines()

    reasons, dead_letters = await dead_letter_text(settings, 0, timeout=2)
    assert not leaked(shown(init), consumer.logs(), shown(replay), shown(backfill), dead_letters,
                      await report_index_text(es, settings.report_index))


@pytest.mark.slow
async def test_thanos_away_with_credentials_in_its_url_shows_them_nowhere(
    settings: Settings, base_env: dict, in_urls: dict, es, hook_settings: HookSettings, unique: str, tmp_path: Path
):
    away = f"127.0.0.1:{closed_port()}"
    env = {**base_env, **in_urls, "THANOS_URL": f"http://{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}@{away}"}
    uuid = f"{unique}-thanos-away"
    assert not (await publish(make_event(finished_doc(uuid, f"cluster-{unique}")), hook_settings)).spooled
    async with running_consumer(settings, tmp_path / "run.log", "--log-level", "DEBUG", **env) as consumer:
        # The build meets Thanos away: today it is dead-lettered once retries are spent; a consumer that
        # waits out outages instead logs them. Either way the address is shown, and no secret.
        reasons, dead_letters = await dead_letter_text(settings, 1, timeout=45)
        assert await consumer.stop() == 0
    assert away in reasons + consumer.logs()
    assert not leaked(consumer.logs(), dead_letters, await report_index_text(es, settings.report_index))


@pytest.mark.parametrize("verb", ["init", "run", "backfill"])
async def test_elasticsearch_away_with_credentials_in_its_url_is_one_line_without_them(
    base_env: dict, in_urls: dict, verb: str
):
    away = f"127.0.0.1:{closed_port()}"
    # `run` and `backfill` wait out an outage; the operator's limit makes them give up.
    env = {**base_env, **in_urls, "ES_SERVER": f"http://{ES_USER}:{ES_URL_PASSWORD}@{away}", "OUTAGE_LIMIT": "3"}
    result = await command("consumer.cli", "--log-level", "DEBUG", verb, env=env, timeout=120)
    assert result.code == 1
    assert f"report-consumer: cannot reach Elasticsearch at http://{away}" in result.err.strip().splitlines()[-1]
    assert not leaked(shown(result))


@pytest.mark.parametrize("verbose", [[], ["--verbose"]])
@pytest.mark.parametrize("source", ["variables", "files"])
async def test_report_hook_with_kafka_away_spools_and_shows_no_secret(
    in_files: dict, tmp_path: Path, unique: str, source: str, verbose: list
):
    credentials = IN_VARIABLES if source == "variables" else in_files
    env = {"PATH": "/usr/bin:/bin", **credentials, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
           "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "REPORT_HOOK_TIMEOUT": "2", "REPORT_HOOK_SPOOL": str(tmp_path / "spool.jsonl")}
    doc = json.dumps(finished_doc(f"{unique}-hook", "c")).encode()
    result = await command("producer_hooks.cli", *verbose, "publish", "-", env=env, stdin=doc, timeout=60)
    assert result.code == 0 and "spooled" in result.err
    assert not leaked(shown(result))


SETTINGS_ERRORS = {
    "credentials twice for Elasticsearch": {"ES_PASSWORD": ES_FILE_PASSWORD},
    "credentials twice for Thanos": {"THANOS_TOKEN": THANOS_TOKEN},
    "no scheme": {"ES_SERVER": f"{ES_USER}:{ES_URL_PASSWORD}@localhost:9200"},
    "an unencoded slash in a password": {"THANOS_URL": f"http://{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}/x@localhost:9090"},
    "a port that is no number": {"ES_SERVER": f"http://{ES_USER}:{ES_URL_PASSWORD}@localhost:ninety"},
    "credentials in the Grafana URL": {"GRAFANA_URL": f"https://{ES_USER}:{ES_URL_PASSWORD}@grafana.example.com"},
    "a malformed number beside the secrets": {"MAX_IN_FLIGHT": "many"},
    "SASL without a user name": {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": ""},
    "an unknown security protocol": {"KAFKA_SECURITY_PROTOCOL": "TLS"},
}
KAFKA_PROBLEMS = {"SASL without a user name", "an unknown security protocol"}


@pytest.mark.parametrize("problem", SETTINGS_ERRORS)
async def test_a_settings_error_is_one_line_without_any_secret(base_env: dict, in_urls: dict, unique: str, problem: str):
    env = {**base_env, **in_urls, **SETTINGS_ERRORS[problem]}
    result = await command("consumer.cli", "run", env=env, timeout=60)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    texts = [shown(result)]
    if problem in KAFKA_PROBLEMS:  # the settings report-hook reads
        doc = json.dumps(finished_doc(f"{unique}-hook", "c")).encode()
        hook = await command("producer_hooks.cli", "publish", "-", env=env, stdin=doc, timeout=60)
        assert hook.code == 2 and len(hook.err.strip().splitlines()) == 1, hook.err
        texts.append(shown(hook))
    assert not leaked(*texts)
