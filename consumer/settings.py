"""The consumer's settings: one frozen dataclass tree, read once from the environment.

The Kafka part is the same :class:`~producer_hooks.settings.KafkaSettings` the hooks use, so both
ends of the topic are configured by the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from consumer.retry import RetryPolicy
from producer_hooks.events import DEFAULT_LIMITS, EventLimits
from producer_hooks.settings import (
    Env,
    KafkaSettings,
    Secret,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_path,
    env_required,
    env_secret,
    env_str,
    env_url,
    env_url_credentials,
    limits_from_env,
)

# A Grafana dashboard is "key=uid/slug"; the key names the link in the report.
DEFAULT_DASHBOARDS = "kube_burner=kube-burner-report/kube-burner-report-ocp-wrapper,cluster=ocp-performance/openshift-performance"
DEFAULT_PROFILES = "*=control-plane"


@dataclass(frozen=True)
class Dashboard:
    key: str
    uid: str
    slug: str


@dataclass(frozen=True)
class ElasticsearchSettings:
    url: str = "http://localhost:9200"  # never with credentials: those are taken out into the fields below
    api_key: Secret | None = field(default=None, repr=False)
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_certs: Path | None = None
    verify_certs: bool = True
    timeout_s: float = 30.0
    # elasticsearch or opensearch; None: whatever the server says it is (GET /)
    store: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> ElasticsearchSettings:
        url, user, password = env_url_credentials(env, "ES_SERVER", cls.url)
        explicit = _set(env, "ES_USERNAME", "ES_PASSWORD", "ES_PASSWORD_FILE", "ES_API_KEY", "ES_API_KEY_FILE")
        if (user is not None or password is not None) and explicit:
            raise SettingsError(f"ES_SERVER has credentials in it (user:password@) but {', '.join(explicit)} "
                                "is set too: give credentials one way")
        return cls(
            url=url,  # type: ignore[arg-type]
            api_key=env_secret(env, "ES_API_KEY"),
            username=user if user is not None or password is not None else env_str(env, "ES_USERNAME"),
            password=password if user is not None or password is not None else env_secret(env, "ES_PASSWORD"),
            ca_certs=env_path(env, "ES_CA_CERTS", must_exist=True),
            verify_certs=env_bool(env, "ES_VERIFY_CERTS", True),
            timeout_s=env_float(env, "ES_TIMEOUT", cls.timeout_s, minimum=0.1),
            store=env_store(env),
        )

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(secret for secret in (self.api_key, self.password) if secret is not None)


@dataclass(frozen=True)
class ThanosSettings:
    url: str = "http://localhost:9090"  # never with credentials: those are taken out into the fields below
    token: Secret | None = field(default=None, repr=False)  # bearer
    username: str | None = None  # HTTP basic
    password: Secret | None = field(default=None, repr=False)
    ca_file: Path | None = None
    verify_certs: bool = True
    cluster_label: str = "openshift_cluster_name"
    step_s: float = 10.0
    concurrency: int = 4
    timeout_s: float = 60.0
    # Per query of a run: points per series (7 days at 10 s fit), and queries asked per run.
    max_points: int = 65_000
    max_queries: int = 200

    @classmethod
    def from_env(cls, env: Env) -> ThanosSettings:
        url, user, password = env_url_credentials(env, "THANOS_URL", cls.url)
        explicit = _set(env, "THANOS_USERNAME", "THANOS_PASSWORD", "THANOS_PASSWORD_FILE")
        if (user is not None or password is not None) and explicit:
            raise SettingsError(f"THANOS_URL has credentials in it (user:password@) but {', '.join(explicit)} "
                                "is set too: give credentials one way")
        if user is None and password is None:
            user, password = env_str(env, "THANOS_USERNAME"), env_secret(env, "THANOS_PASSWORD")
        token = env_secret(env, "THANOS_TOKEN")
        if token is not None and (user is not None or password is not None):
            raise SettingsError("THANOS_TOKEN (bearer) and basic-auth credentials (in THANOS_URL or "
                                "THANOS_USERNAME/THANOS_PASSWORD) are both set: give one of them")
        return cls(
            url=url,  # type: ignore[arg-type]
            token=token,
            username=user,
            password=password,
            ca_file=env_path(env, "THANOS_CA_FILE", must_exist=True),
            verify_certs=env_bool(env, "THANOS_VERIFY_CERTS", True),
            cluster_label=env_required(env, "THANOS_CLUSTER_LABEL", cls.cluster_label),
            step_s=env_float(env, "THANOS_STEP", cls.step_s, minimum=1),
            concurrency=env_int(env, "THANOS_CONCURRENCY", cls.concurrency, minimum=1),
            timeout_s=env_float(env, "THANOS_TIMEOUT", cls.timeout_s, minimum=0.1),
            max_points=env_int(env, "THANOS_MAX_POINTS", cls.max_points, minimum=2),
            max_queries=env_int(env, "THANOS_MAX_QUERIES", cls.max_queries, minimum=1),
        )

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(secret for secret in (self.token, self.password) if secret is not None)


def env_store(env: Env) -> str | None:
    raw = (env_str(env, "STORE") or "auto").lower()
    if raw == "auto":
        return None
    if raw not in ("elasticsearch", "opensearch"):
        raise SettingsError(f"STORE={raw!r} is not one of auto, elasticsearch, opensearch")
    return raw


def _set(env: Env, *names: str) -> list[str]:
    """Which of ``names`` are set (non-empty)."""
    return [name for name in names if env_str(env, name) is not None]


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = KafkaSettings()
    group: str = "report-consumer"
    dead_letter_topic: str = "perf-scale-ci-runs.dead-letter"
    es: ElasticsearchSettings = ElasticsearchSettings()
    thanos: ThanosSettings = ThanosSettings()
    report_index: str = "ci-reports"
    results_index: str = "ripsaw-kube-burner*"
    metadata_index: str = "perf_scale_ci*"
    grafana_url: str | None = None
    dashboards: tuple[Dashboard, ...] = ()
    # (benchmark glob, profile names), first match wins.
    benchmark_profiles: tuple[tuple[str, tuple[str, ...]], ...] = (("*", ("control-plane",)),)
    profile_dir: Path | None = None
    max_in_flight: int = 8
    results_deadline_s: float = 300.0
    commit_interval_s: float = 5.0
    drain_timeout_s: float = 30.0
    retry_attempts: int = 5
    retry_max_wait_s: float = 30.0
    # How long one run may wait out a server's outage before it is dead-lettered; 0: for as long as it lasts.
    outage_limit_s: float = 0.0
    # A started run with no finished event this long after its start is reported incomplete.
    incomplete_after_s: float = 86_400.0
    sweep_every_s: float = 60.0
    pending_index: str = "ci-reports-pending"
    # What an event may claim (dates, window length): the same limits the hooks apply.
    limits: EventLimits = DEFAULT_LIMITS
    # Verdicts: extra comparison rules, acknowledgements and notification records (None: beside
    # REPORT_INDEX, see the properties), and the webhook told about regressions (a secret: Slack's
    # URL carries its token).
    comparison_dir: Path | None = None
    ack_index: str | None = None
    notification_index: str | None = None
    webhook_url: Secret | None = field(default=None, repr=False)
    webhook_timeout_s: float = 10.0

    # `run` serves /healthz, /readyz and /metrics here; port 0: no server.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    @property
    def acks_index(self) -> str:
        return self.ack_index or f"{self.report_index}-acks"

    @property
    def notifications_index(self) -> str:
        return self.notification_index or f"{self.report_index}-notifications"

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retry_attempts, max_wait_s=self.retry_max_wait_s)

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret value the settings hold, for :class:`~producer_hooks.redaction.Redactor`."""
        webhook = (self.webhook_url,) if self.webhook_url is not None else ()
        return (*self.kafka.secrets(), *self.es.secrets(), *self.thanos.secrets(), *webhook)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = os.environ if env is None else env
        kafka = KafkaSettings.from_env(env)
        report_index = env_required(env, "REPORT_INDEX", cls.report_index)
        return cls(
            kafka=kafka,
            group=env_required(env, "REPORT_GROUP", cls.group),
            dead_letter_topic=env_required(env, "DEAD_LETTER_TOPIC", f"{kafka.topic}.dead-letter"),
            es=ElasticsearchSettings.from_env(env),
            thanos=ThanosSettings.from_env(env),
            report_index=report_index,
            results_index=env_required(env, "RESULTS_INDEX", cls.results_index),
            metadata_index=env_required(env, "METADATA_INDEX", cls.metadata_index),
            grafana_url=env_url(env, "GRAFANA_URL", None),
            dashboards=parse_dashboards(env_required(env, "GRAFANA_DASHBOARDS", DEFAULT_DASHBOARDS)),
            benchmark_profiles=parse_benchmark_profiles(env_required(env, "BENCHMARK_PROFILES", DEFAULT_PROFILES)),
            profile_dir=env_path(env, "PROFILE_DIR", must_exist=True),
            max_in_flight=env_int(env, "MAX_IN_FLIGHT", cls.max_in_flight, minimum=1),
            results_deadline_s=env_float(env, "RESULTS_DEADLINE", cls.results_deadline_s, minimum=0),
            commit_interval_s=env_float(env, "COMMIT_INTERVAL", cls.commit_interval_s, minimum=0.1),
            drain_timeout_s=env_float(env, "DRAIN_TIMEOUT", cls.drain_timeout_s, minimum=0),
            retry_attempts=env_int(env, "RETRY_ATTEMPTS", cls.retry_attempts, minimum=1),
            retry_max_wait_s=env_float(env, "RETRY_MAX_WAIT", cls.retry_max_wait_s, minimum=0),
            outage_limit_s=env_float(env, "OUTAGE_LIMIT", cls.outage_limit_s, minimum=0),
            limits=limits_from_env(env),
            http_host=env_required(env, "HTTP_HOST", cls.http_host),
            http_port=env_port(env, "HTTP_PORT", cls.http_port),
            incomplete_after_s=env_float(env, "INCOMPLETE_AFTER", cls.incomplete_after_s, minimum=1),
            sweep_every_s=env_float(env, "INCOMPLETE_SWEEP", cls.sweep_every_s, minimum=0.1),
            pending_index=env_required(env, "PENDING_INDEX", f"{report_index}-pending"),
            comparison_dir=env_path(env, "COMPARISON_DIR", must_exist=True),
            ack_index=env_str(env, "ACK_INDEX"),
            notification_index=env_str(env, "NOTIFICATION_INDEX"),
            webhook_url=webhook_url(env),
            webhook_timeout_s=env_float(env, "WEBHOOK_TIMEOUT", cls.webhook_timeout_s, minimum=0.1),
        )


def webhook_url(env: Env) -> Secret | None:
    """``WEBHOOK_URL`` (or the file ``WEBHOOK_URL_FILE`` names): an http(s) URL, never echoed."""
    url = env_secret(env, "WEBHOOK_URL")
    if url is None:
        return None
    parts = urlsplit(url.reveal())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("WEBHOOK_URL is not an http(s) URL (its value is not shown: it may hold a token)")
    return url


def env_port(env: Env, name: str, default: int) -> int:
    port = env_int(env, name, default, minimum=0)
    if port > 65535:
        raise SettingsError(f"{name}={port} is not a port number (0-65535)")
    return port


def parse_dashboards(raw: str) -> tuple[Dashboard, ...]:
    """``key=uid/slug,key=uid/slug`` into dashboards, with a one-line error naming the variable."""
    dashboards = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, _, target = item.partition("=")
        uid, _, slug = target.partition("/")
        if not (key and uid and slug):
            raise SettingsError(f"GRAFANA_DASHBOARDS: {item!r} is not key=uid/slug")
        dashboards.append(Dashboard(key.strip(), uid.strip(), slug.strip()))
    return tuple(dashboards)


def parse_benchmark_profiles(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``glob=profile+profile;glob=profile`` into (glob, profiles) pairs, first match wins."""
    rules = []
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        pattern, _, names = item.partition("=")
        profiles = tuple(filter(None, (name.strip() for name in names.split("+"))))
        if not pattern.strip() or not profiles:
            raise SettingsError(f"BENCHMARK_PROFILES: {item!r} is not glob=profile[+profile]")
        rules.append((pattern.strip(), profiles))
    return tuple(rules)
