"""A private set of servers with TLS: Kafka with TLS and TLS+SCRAM listeners, Prometheus over HTTPS
only, started by `PERF_REPORTS_TLS=1 scripts/services` on ports of their own, with certificates from
a local CA. The session fixture `secure` (conftest.py) starts one set for every test that needs it,
on free ports, so that several test runs on one machine do not collide."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from producer_hooks.settings import KafkaSettings, Secret
from tests.support.services import SCRIPT

PASSWORD = "scram-test-password"
PORT_VARIABLES = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_SSL_PORT", "KAFKA_SASL_SSL_PORT", "PROMETHEUS_PORT")


@dataclasses.dataclass
class SecureServers:
    env: dict[str, str]
    ca: Path

    @property
    def prometheus_url(self) -> str:
        return f"https://127.0.0.1:{self.env['PROMETHEUS_PORT']}"

    def services(self, *args: str) -> str:
        result = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def kafka(self, protocol: str = "SASL_SSL", password: str = PASSWORD, ca: Path | None = None) -> KafkaSettings:
        port = self.env["KAFKA_SASL_SSL_PORT" if protocol == "SASL_SSL" else "KAFKA_SSL_PORT"]
        return KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol=protocol,
                             sasl_mechanism="SCRAM-SHA-256", sasl_username="reports", sasl_password=Secret(password),
                             ssl_cafile=ca or self.ca)

    def kafka_env(self, password: str = PASSWORD) -> dict[str, str]:
        """The environment that makes the hooks and the consumer use Kafka over TLS with SCRAM."""
        kafka = self.kafka(password=password)
        return {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "reports",
                "KAFKA_SASL_PASSWORD": password, "KAFKA_SSL_CAFILE": str(self.ca)}


@contextmanager
def secure_servers(run: Path) -> Iterator[SecureServers]:
    """Kafka and Prometheus with TLS, their data in ``run``; stopped and deleted at exit."""
    servers = SecureServers({**os.environ, **free_ports(PORT_VARIABLES), "PERF_REPORTS_RUN": str(run),
                             "PERF_REPORTS_TLS": "1", "KAFKA_SCRAM_PASSWORD": PASSWORD}, run / "tls" / "ca.pem")
    try:
        servers.services("up", "kafka", "prometheus")
        yield servers
    finally:
        servers.services("reset")


def free_ports(names: tuple[str, ...]) -> dict[str, str]:
    """A port nobody listens on for each name (the kernel's choice; free until someone binds it)."""
    sockets = [socket.socket() for _ in names]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {name: str(sock.getsockname()[1]) for name, sock in zip(names, sockets)}
    finally:
        for sock in sockets:
            sock.close()
