"""Credentials out of URLs when settings are read, and the redaction safety net on tricky inputs."""

from __future__ import annotations

import io
import logging

import pytest

from consumer.settings import Settings
from producer_hooks.redaction import MASK, RedactingFilter, Redactor, redact_url_value, strip_userinfo
from producer_hooks.settings import Secret, SettingsError, split_userinfo


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@es.example.com:9200", ("https://es.example.com:9200", "user", "pass")),
        ("https://us%40er:p%40ss%3Aw%2Frd@es.example.com/prefix", ("https://es.example.com/prefix", "us@er", "p@ss:w/rd")),
        ("https://user:p@ss@word@es.example.com:9200/x", ("https://es.example.com:9200/x", "user", "p@ss@word")),
        ("http://user:pw:with:colons@[::1]:9200", ("http://[::1]:9200", "user", "pw:with:colons")),
        ("http://[fe80::1]:9090", ("http://[fe80::1]:9090", None, None)),
        ("https://ghp_token123@thanos.example.com", ("https://thanos.example.com", "ghp_token123", None)),
        ("https://user:@thanos.example.com", ("https://thanos.example.com", "user", "")),
        ("https://:only-a-password@thanos.example.com", ("https://thanos.example.com", None, "only-a-password")),
        ("https://thanos.example.com/path@version", ("https://thanos.example.com/path@version", None, None)),
    ],
)
def test_split_userinfo_takes_decoded_credentials_out_of_the_url(url: str, expected: tuple):
    assert split_userinfo(url) == expected


def test_credentials_in_es_server_and_thanos_url_become_basic_auth_and_leave_the_urls():
    settings = Settings.from_env({"ES_SERVER": "https://es-user:es%2Fpass%40word@es.example.com:9243/",
                                  "THANOS_URL": "https://th-user:th-pass@[2001:db8::7]:9091/thanos"})
    assert (settings.es.url, settings.es.username, settings.es.password) == (
        "https://es.example.com:9243", "es-user", Secret("es/pass@word"))
    assert (settings.thanos.url, settings.thanos.username, settings.thanos.password) == (
        "https://[2001:db8::7]:9091/thanos", "th-user", Secret("th-pass"))
    shown = repr(settings)
    assert "es/pass@word" not in shown and "es%2Fpass%40word" not in shown and "th-pass" not in shown
    assert {secret.reveal() for secret in settings.secrets()} == {"es/pass@word", "th-pass"}


def test_explicit_credentials_are_used_when_the_urls_carry_none(tmp_path):
    password = tmp_path / "es-password"
    password.write_text("from-a-file\n")
    settings = Settings.from_env({"ES_USERNAME": "reports", "ES_PASSWORD_FILE": str(password),
                                  "THANOS_USERNAME": "viewer", "THANOS_PASSWORD": "th-explicit"})
    assert (settings.es.username, settings.es.password) == ("reports", Secret("from-a-file"))
    assert (settings.thanos.username, settings.thanos.password, settings.thanos.token) == ("viewer", Secret("th-explicit"), None)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ES_SERVER": "https://u:url-secret@es:9200", "ES_PASSWORD": "var-secret"}, ("ES_SERVER", "ES_PASSWORD")),
        ({"ES_SERVER": "https://u:url-secret@es:9200", "ES_API_KEY": "var-secret"}, ("ES_SERVER", "ES_API_KEY")),
        ({"ES_SERVER": "https://u:url-secret@es:9200", "ES_USERNAME": "other"}, ("ES_SERVER", "ES_USERNAME")),
        ({"THANOS_URL": "https://u:url-secret@th:9090", "THANOS_TOKEN": "var-secret"}, ("THANOS_TOKEN",)),
        ({"THANOS_URL": "https://u:url-secret@th:9090", "THANOS_PASSWORD": "var-secret"}, ("THANOS_URL", "THANOS_PASSWORD")),
        ({"THANOS_USERNAME": "u", "THANOS_PASSWORD": "var-secret", "THANOS_TOKEN": "url-secret"}, ("THANOS_TOKEN",)),
        ({"GRAFANA_URL": "https://viewer:url-secret@grafana.example.com"}, ("GRAFANA_URL",)),
    ],
)
def test_credentials_given_two_ways_are_a_one_line_error_that_echoes_no_secret(env: dict, named: tuple):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert all(name in message for name in named) and "\n" not in message
    assert "url-secret" not in message and "var-secret" not in message


@pytest.mark.parametrize(
    "value",
    [
        "es-user:url-secret@localhost:9200",  # no scheme
        "https://es-user:url/secret@localhost:9200",  # unencoded "/" in the password
        "https://es-user:url-secret@localhost:port",  # a port that is no number
        "https://es-user:url?secret@localhost:9200",
        "https://es-user:1234/url-secret@localhost",  # reads as host es-user, port 1234: refused all the same
        "ftp://es-user:url-secret@localhost",
    ],
)
def test_a_rejected_url_is_echoed_without_its_userinfo(value: str):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ES_SERVER": value})
    message = str(raised.value)
    assert message.startswith("ES_SERVER") and "\n" not in message
    assert "secret" not in message and "es-user" not in message


def test_redaction_masks_every_url_userinfo_in_a_text():
    text = ("tried http://a:pw1@h1:9200/x, then https://b:p@w2@[::1]:9091?q=1 and "
            "'https://tok3n@github.com/o/r.git' <ftp://c%40d:pw%2F4@files> but not https://plain.example.com/@user "
            "nor mail me@example.com; http://e:pw5@h5,http://f:pw6@h6")
    redacted = strip_userinfo(text)
    for secret in ("pw1", "p@w2", "tok3n", "pw%2F4", "c%40d", "pw5", "pw6"):
        assert secret not in redacted
    assert redacted.count(f"{MASK}@") == 6
    assert "https://plain.example.com/@user" in redacted and "me@example.com" in redacted
    assert "h1:9200/x" in redacted and "[::1]:9091?q=1" in redacted


def test_redaction_masks_known_secrets_in_any_form_and_authorization_values():
    redactor = Redactor.of([Secret("s3cr/et@value"), "api-key-value", None, "abc"])
    text = ("value s3cr/et@value, url-encoded s3cr%2Fet%40value, key=api-key-value "
            "Authorization: Basic ZXM6cHc= {'authorization': 'Bearer another-token'} authorization=ApiKey a1b2c3")
    redacted = redactor(text)
    for secret in ("s3cr/et@value", "s3cr%2Fet%40value", "api-key-value", "ZXM6cHc=", "another-token", "a1b2c3"):
        assert secret not in redacted
    assert "Authorization: Basic ***" in redacted
    assert "abc" in Redactor.of(["abc"])("abc"), "values shorter than 4 characters are left alone"


def test_a_rejected_url_value_is_masked_up_to_its_last_at():
    assert redact_url_value("https://u:p/a@ss@host:1/x") == "https://***@host:1/x"
    assert redact_url_value("u:pw@host:9200") == "***@host:9200"
    assert redact_url_value("https://host:9200") == "https://host:9200"


def test_redaction_reaches_into_documents():
    doc = {"build_url": "https://ci:tok-123@jenkins/job/1", "nested": [{"u": "http://x:y-secret@h"}, 5, None],
           "uuid": "u-1"}
    assert Redactor().apply(doc) == {"build_url": "https://***@jenkins/job/1", "nested": [{"u": "http://***@h"}, 5, None],
                                     "uuid": "u-1"}


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor.of(["known-secret-value"])))
    logger = logging.getLogger("test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting to %s as %s", "https://user:url-pass@host", "known-secret-value")
        try:
            raise ConnectionError("cannot reach https://user:url-pass@host (known-secret-value)")
        except ConnectionError:
            logger.exception("failed")
        logger.error("bad format %s %s", "known-secret-value")  # one argument short
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "Traceback" in output and "ConnectionError" in output and "https://***@host" in output
    assert "url-pass" not in output and "known-secret-value" not in output
