"""Settings: read once from the environment; bad ones are one line naming the variable; secrets stay secret."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from consumer.settings import Settings
from producer_hooks.settings import HookSettings, SettingsError


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_IN_FLIGHT", "many"),
        ("MAX_IN_FLIGHT", "0"),
        ("RESULTS_DEADLINE", "soon"),
        ("ES_SERVER", "localhost:9200"),
        ("THANOS_URL", "ftp://thanos"),
        ("ES_VERIFY_CERTS", "maybe"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("GRAFANA_DASHBOARDS", "no-uid-here"),
        ("BENCHMARK_PROFILES", "*="),
        ("ES_CA_CERTS", "/nonexistent/ca.pem"),
        ("THANOS_TOKEN_FILE", "/nonexistent/token"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_the_variable(variable: str, value: str):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert variable in message and "\n" not in message


@pytest.mark.parametrize("command", [["consumer.cli", "run"], ["producer_hooks.cli", "flush"]])
def test_the_commands_print_the_setting_error_without_a_traceback(command: list[str]):
    env = {"PATH": "/usr/bin:/bin", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}  # SASL without credentials
    result = subprocess.run([sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "KAFKA_SASL_USERNAME" in lines[0] and "Traceback" not in result.stderr


def test_defaults_match_the_local_servers():
    settings = Settings.from_env({})
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.kafka.topic == "perf-scale-ci-runs"
    assert settings.es.url == "http://localhost:9200" and settings.thanos.url == "http://localhost:9090"
    assert (settings.report_index, settings.results_index, settings.metadata_index) == ("ci-reports", "ripsaw-kube-burner*", "perf_scale_ci*")
    assert settings.dead_letter_topic == "perf-scale-ci-runs.dead-letter"


def test_secrets_come_from_variables_or_files_and_never_show_in_reprs(tmp_path):
    token = tmp_path / "token"
    token.write_text("thanos-token-value\n")
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "reports", "KAFKA_SASL_PASSWORD": "kafka-pass-value",
           "ES_API_KEY": "es-key-value", "THANOS_TOKEN_FILE": str(token)}
    settings = Settings.from_env(env)
    assert settings.thanos.token.reveal() == "thanos-token-value"
    assert settings.kafka.client_options()["sasl_plain_password"] == "kafka-pass-value"
    shown = repr(settings) + str(settings) + repr(HookSettings.from_env(env))
    for secret in ("thanos-token-value", "kafka-pass-value", "es-key-value"):
        assert secret not in shown


def test_secrets_stay_out_of_the_logs_even_at_debug_level(service_settings: Settings, unique: str):
    env = {"PATH": "/usr/bin:/bin", "ES_SERVER": service_settings.es.url, "ES_USERNAME": "elastic",
           "ES_PASSWORD": "es-password-value", "THANOS_TOKEN": "thanos-token-value",
           "KAFKA_BOOTSTRAP_SERVERS": service_settings.kafka.bootstrap_servers,
           "RUNS_TOPIC": f"test-secrets-{unique}", "REPORT_INDEX": f"test-reports-{unique}"}
    result = subprocess.run([sys.executable, "-m", "consumer.cli", "--log-level", "DEBUG", "init", "--partitions", "1"],
                            env=env, capture_output=True, text=True, timeout=120)
    urllib.request.urlopen(urllib.request.Request(f"{service_settings.es.url}/test-reports-{unique}", method="DELETE"))
    assert result.returncode == 0, result.stderr
    assert f"index test-reports-{unique}: created" in result.stdout
    for secret in ("es-password-value", "thanos-token-value"):
        assert secret not in result.stdout + result.stderr
