"""Connection security settings: combinations, secrets from files, nothing secret in errors.

The servers-side behaviour (wrong password, unknown CA, missing ACL) is tested against real
servers in tests/integration/test_security.py.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_monitor.adapters import kafka_clients
from stream_monitor.adapters.kafka_clients import client_kwargs, kafka_kwargs
from stream_monitor.settings import Settings, settings_problems
from stream_monitor.state.connection import (
    MINIMAL_ACL_COMMANDS,
    minimal_acl_rule,
    redacted_url,
    redis_kwargs,
)

pytestmark = pytest.mark.security

SECRET = "s3cr3t-Pa55"


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
                "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CA_LOCATION",
                "KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION",
                "KAFKA_SSL_KEY_PASSWORD", "KAFKA_SSL_KEY_PASSWORD_FILE",
                "KAFKA_SSL_CHECK_HOSTNAME", "REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD",
                "REDIS_PASSWORD_FILE", "REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE",
                "REDIS_SSL_KEYFILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    _clear(monkeypatch)
    return monkeypatch


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=unit-test-ca", "-keyout", str(d / "ca.key"), "-out",
                    str(d / "ca.crt")], check=True, capture_output=True)
    return d / "ca.crt"


def _problems(**env: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Settings(**env)  # type: ignore[arg-type]
    problems = settings_problems(info.value)
    assert SECRET not in repr(problems)
    return problems


def test_plaintext_default_has_no_security_arguments(env: pytest.MonkeyPatch) -> None:
    kw = client_kwargs(Settings(KAFKA_BOOTSTRAP_SERVERS="k:9092"))  # type: ignore[call-arg]
    assert kw == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert kafka_kwargs("k:1") == {"bootstrap_servers": "k:1", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_from_environment_with_password_file(env: pytest.MonkeyPatch, tmp_path: Path,
                                                      ca: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")  # the newline `echo` adds is not part of the secret
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("KAFKA_SASL_USERNAME", "alice")
    env.setenv("KAFKA_SASL_PASSWORD_FILE", str(pw))
    env.setenv("KAFKA_SSL_CA_LOCATION", str(ca))
    s = Settings()
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL"
    assert (kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "alice", SECRET)
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())


def test_hostname_check_can_be_switched_off(env: pytest.MonkeyPatch, ca: Path) -> None:
    s = Settings(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_LOCATION=str(ca),  # type: ignore[call-arg]
                 KAFKA_SSL_CHECK_HOSTNAME="false")
    ctx = client_kwargs(s)["ssl_context"]
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in client_kwargs(s)


@pytest.mark.parametrize(("env_vars", "var", "fix"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "a",
      "KAFKA_SASL_PASSWORD": SECRET}, "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "a"}, "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE"),
    ({"KAFKA_SASL_USERNAME": "a", "KAFKA_SASL_PASSWORD": SECRET}, "KAFKA_SECURITY_PROTOCOL",
     "SASL_SSL"),
    ({"KAFKA_SSL_CA_LOCATION": "/etc/hostname"}, "KAFKA_SECURITY_PROTOCOL", "SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CA_LOCATION", "cannot read"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/hostname"},
     "KAFKA_SSL_KEY_LOCATION", "both"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "a", "KAFKA_SASL_PASSWORD": SECRET,
      "KAFKA_SASL_PASSWORD_FILE": "/etc/hostname"}, "KAFKA_SASL_PASSWORD", "keep one"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
     "KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
    ({"REDIS_SSL_CA_CERTS": "/etc/hostname", "REDIS_URL": "redis://h:6379/0"}, "REDIS_URL",
     "rediss://"),
    ({"REDIS_PASSWORD": SECRET, "REDIS_URL": f"redis://u:{SECRET}@h:6379/0"}, "REDIS_PASSWORD",
     "keep one"),
    ({"REDIS_URL": "rediss://h:6379/0", "REDIS_SSL_CERTFILE": "/etc/hostname"},
     "REDIS_SSL_KEYFILE", "both"),
    ({"REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "REDIS_PASSWORD_FILE", "cannot read"),
])
def test_bad_combination_names_the_variable_and_the_fix(env: pytest.MonkeyPatch,
                                                        env_vars: dict[str, str], var: str,
                                                        fix: str) -> None:
    for k, v in env_vars.items():
        env.setenv(k, v)
    problems = _problems()
    assert any(p[0] == var and fix in p[1] for p in problems), problems


def test_cli_prints_one_line_per_problem_without_the_secret(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "KAFKA_SASL_PASSWORD": SECRET, "KAFKA_SASL_USERNAME": "bob",
           "HOME": str(tmp_path)}
    cfg = tmp_path / "m.yaml"
    cfg.write_text("models: [{match: m, signals: [{match: '*', detectors: [adwin]}]}]\n")
    p = subprocess.run([sys.executable, "-m", "stream_monitor", "worker", "-c", str(cfg)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines == [ln for ln in lines if ln.startswith("invalid environment settings: ")]
    assert any("KAFKA_SECURITY_PROTOCOL:" in ln and "SASL_SSL" in ln for ln in lines), lines
    assert SECRET not in p.stderr + p.stdout


def test_redis_kwargs_and_redacted_url(env: pytest.MonkeyPatch, tmp_path: Path, ca: Path) -> None:
    pw = tmp_path / "redis-pw"
    pw.write_text(SECRET)
    s = Settings(REDIS_URL="rediss://redis.internal:6380/0", REDIS_USERNAME="sm",  # type: ignore[call-arg]
                 REDIS_PASSWORD_FILE=str(pw), REDIS_SSL_CA_CERTS=str(ca))
    assert redis_kwargs(s) == {"username": "sm", "password": SECRET, "ssl_ca_certs": str(ca)}
    assert redacted_url(f"rediss://sm:{SECRET}@h:1/0") == "rediss://sm:***@h:1/0"
    assert redacted_url("redis://h:1/0") == "redis://h:1/0"


def test_minimal_acl_rule_covers_every_command_of_the_stores() -> None:
    """Every command named in the stores' Lua scripts and client calls is in the rule."""
    import re

    root = Path(__file__).resolve().parents[2] / "stream_monitor" / "state"
    text = "".join(p.read_text() for p in root.glob("*.py") if p.name != "connection.py")
    in_lua = {c.lower() for c in re.findall(r"redis\.call\('([A-Z]+)'", text)}
    client = set(re.findall(r"(?:client|pipe)\.(get|set|mget|hgetall|hdel|pexpire|ping)\(", text))
    raw = {c.lower() for c in re.findall(r'execute_command\("([A-Z]+)"', text)} - {"wait"}
    loads = {"script|load"} if "script_load(" in text else set()
    used = in_lua | client | raw | loads
    assert {"evalsha", "mget", "script|load"} <= used  # the search finds what it looks for
    assert used <= set(MINIMAL_ACL_COMMANDS), used - set(MINIMAL_ACL_COMMANDS)
    rule = minimal_acl_rule("sm")
    assert rule.startswith("resetkeys ~sm:* resetchannels -@all ")
    assert "+evalsha" in rule and "+script|load" in rule and "script|exists" not in rule


@pytest.mark.parametrize(("logged", "var"), [
    ('Unable connect to "localhost:29802": [Error 58] SaslAuthenticationFailed: Authentication '
     "failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
     "KAFKA_SASL_PASSWORD"),
    ('Unable connect to "localhost:29802": [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify '
     "failed: self-signed certificate in certificate chain (_ssl.c:1006)", "KAFKA_SSL_CA_LOCATION"),
    ('Unable connect to "localhost:29802": [Error 33] UnsupportedSaslMechanismError',
     "KAFKA_SASL_MECHANISM"),
    ("Unable connect to \"x:1\": [Errno 111] Connect call failed ('127.0.0.1', 1) refused",
     "KAFKA_BOOTSTRAP_SERVERS"),
])
def test_kafka_failure_causes_map_to_a_setting(env: pytest.MonkeyPatch, ca: Path, logged: str,
                                               var: str) -> None:
    s = Settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",  # type: ignore[call-arg]
                 KAFKA_SASL_USERNAME="alice", KAFKA_SASL_PASSWORD=SECRET,
                 KAFKA_SSL_CA_LOCATION=str(ca))
    setting, message = kafka_clients._classify(s, logged + "\nKafkaConnectionError: Unable to "
                                               "bootstrap from [('localhost', 29802)]")
    assert setting == var
    assert "\n" not in message and SECRET not in message


def test_no_setting_or_variable_reaches_a_failpoint(env: pytest.MonkeyPatch) -> None:
    """A stray variable cannot make a production worker kill itself: failpoints are handed to
    the worker by the tests' own entry point (tests/failpoint_worker.py), and nothing in the
    package reads one or kills its own process."""
    import stream_monitor

    assert not [f for f in Settings.model_fields if "failpoint" in f]
    s = Settings(SM_FAILPOINT="after_save:1", SM_ENABLE_TEST_FAILPOINTS="1")  # type: ignore[call-arg]
    assert "after_save" not in repr(s.model_dump())
    package = Path(stream_monitor.__file__).parent
    source = "".join(p.read_text() for p in package.rglob("*.py"))
    assert "SIGKILL" not in source and "FAILPOINT" not in source


def test_readyz_says_a_reason_code_not_the_exception_text() -> None:
    import asyncio

    from redis.exceptions import AuthenticationError

    from stream_monitor.observability.http import Readiness

    def redis() -> bool:
        raise AuthenticationError(f"invalid password {SECRET} for rediss://sm@10.0.0.7:6380")

    async def kafka() -> bool:
        raise ConnectionRefusedError(111, "Connection refused to broker-3.internal:9093")

    report = asyncio.run(Readiness({"redis": redis, "kafka": kafka}, cache_seconds=0).report())
    assert report == {"ready": False, "checks": {
        "redis": {"ok": False, "detail": "auth_failed"},
        "kafka": {"ok": False, "detail": "unreachable"}}}


def test_tools_given_a_bootstrap_string_use_the_environments_security(
        env: pytest.MonkeyPatch, tmp_path: Path, ca: Path) -> None:
    """The benchmarks and the kafka_tools helpers take a bootstrap string: it gets the security
    settings of the environment, as the worker processes they start do."""
    from stream_monitor.state.connection import env_redis_kwargs

    assert kafka_kwargs("k:1") == {"bootstrap_servers": "k:1", "security_protocol": "PLAINTEXT"}
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("KAFKA_SASL_USERNAME", "bench")
    env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    env.setenv("KAFKA_SSL_CA_LOCATION", str(ca))
    kw = kafka_kwargs("k:1")
    assert (kw["bootstrap_servers"], kw["security_protocol"], kw["sasl_plain_password"]) == (
        "k:1", "SASL_SSL", SECRET)
    env.setenv("REDIS_USERNAME", "sm")
    env.setenv("REDIS_SSL_CA_CERTS", str(ca))
    assert env_redis_kwargs("rediss://r:6380/0") == {"username": "sm", "ssl_ca_certs": str(ca)}
