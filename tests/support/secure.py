"""A private set of servers with TLS and SCRAM: a broker with TLS and TLS + SCRAM listeners and a
Prometheus serving HTTPS only, started by `PERF_REPORTS_TLS=1 scripts/services` on ports of their
own, with certificates from a local CA. Shared by every test that needs them (the `secure` fixture)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from producer_hooks.settings import KafkaSettings, Secret

from .services import SCRIPT, closed_port

PASSWORD = "scram-test-password"
PORT_NAMES = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_SSL_PORT", "KAFKA_SASL_SSL_PORT", "PROMETHEUS_PORT")


@dataclasses.dataclass
class SecureServers:
    env: dict[str, str]
    ca: Path
    ports: dict[str, str]  # free ports picked at start, so test sessions side by side do not collide

    @property
    def prometheus_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['PROMETHEUS_PORT']}"

    def services(self, *args: str) -> str:
        result = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def kafka(self, protocol: str = "SASL_SSL", password: str = PASSWORD, ca: Path | None = None) -> KafkaSettings:
        port = self.ports["KAFKA_SASL_SSL_PORT"] if protocol == "SASL_SSL" else self.ports["KAFKA_SSL_PORT"]
        return KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol=protocol,
                             sasl_mechanism="SCRAM-SHA-256", sasl_username="reports", sasl_password=Secret(password),
                             ssl_cafile=ca or self.ca)

    def kafka_env(self, password: str = PASSWORD) -> dict[str, str]:
        """The environment that points `report-consumer` or `report-hook` at the SCRAM listener."""
        return {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['KAFKA_SASL_SSL_PORT']}", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "reports",
                "KAFKA_SASL_PASSWORD": password, "KAFKA_SSL_CAFILE": str(self.ca)}


@contextmanager
def secure_servers(run: Path) -> Iterator[SecureServers]:
    """Kafka and Prometheus with TLS (and SCRAM) under ``run``; stopped and deleted afterwards."""
    ports = {name: str(closed_port()) for name in PORT_NAMES}
    servers = SecureServers({**os.environ, **ports, "PERF_REPORTS_RUN": str(run), "PERF_REPORTS_TLS": "1",
                             "KAFKA_SCRAM_PASSWORD": PASSWORD}, run / "tls" / "ca.pem", ports)
    try:
        servers.services("up", "kafka", "prometheus")
        yield servers
    finally:
        servers.services("reset")
