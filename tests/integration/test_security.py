"""Secure connections on real servers (scripts/services-secure.sh, started by scripts/test.sh):
a Kafka SASL_SSL listener with SCRAM users and a TLS-only Redis with ACL users.

- the notifier end to end over SASL_SSL;
- the worker end to end with its state in the TLS Redis as a user limited to the minimal ACL
  rule of docs/security.md, with outputs equal to a plaintext run;
- start-up failures (wrong password, unknown CA, wrong protocol, missing ACL permission): one
  line naming the setting, exit code 2, within seconds (a hang guard, not a timing test), and
  no secret in the output.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_sync
import yaml

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.settings import Settings
from stream_monitor.state.connection import minimal_acl_rule
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import free_port, http_get, stop_process
from ..unit.notify_samples import drift_alert, retrain_request
from .conftest import TEST_CONFIG, Unique, WorkerProcess, wait_committed
from .receivers import Receivers, statuses

pytestmark = [pytest.mark.integration, pytest.mark.security]

# A hang guard for start-up failures: they take well under a second when they work.
FAIL_FAST_SECONDS = 30
HOOK_SECRET = "webhook-signing-secret-for-tests"


@dataclass(frozen=True)
class Secure:
    bootstrap: str
    internal: str
    redis_url: str
    ca: Path
    other_ca: Path
    secrets: Path

    def password(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def kafka_env(self, user: str = "alice", mechanism: str = "SCRAM-SHA-512",
                  **extra: str) -> dict[str, str]:
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SASL_USERNAME": user,
               "KAFKA_SASL_PASSWORD_FILE": str(self.secrets / f"kafka-{user}"),
               "KAFKA_SSL_CA_LOCATION": str(self.ca)}
        env.update(extra)
        return env

    def settings(self, **env: str) -> Settings:
        return Settings(**{**self.kafka_env("admin"), **env})  # type: ignore[arg-type]

    def redis_admin(self) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.redis_url, username="admin",
                                         password=self.password("redis-admin"),
                                         ssl_ca_certs=str(self.ca))


@pytest.fixture(scope="session")
def secure() -> Secure:
    names = ("SM_SECURE_KAFKA_BOOTSTRAP", "SM_SECURE_KAFKA_INTERNAL", "SM_SECURE_REDIS_URL",
             "SM_SECURE_CA", "SM_SECURE_OTHER_CA", "SM_SECURE_SECRETS")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: run these tests through scripts/test.sh "
                    "(e.g. `scripts/test.sh -m security`), which starts the secure services")
    e = os.environ
    return Secure(e["SM_SECURE_KAFKA_BOOTSTRAP"], e["SM_SECURE_KAFKA_INTERNAL"],
                  e["SM_SECURE_REDIS_URL"], Path(e["SM_SECURE_CA"]),
                  Path(e["SM_SECURE_OTHER_CA"]), Path(e["SM_SECURE_SECRETS"]))


@pytest.fixture
def acl_user(secure: Secure, tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Make a Redis ACL user (through `admin`) with a rule; its password goes to a file."""
    made: list[str] = []
    admin = secure.redis_admin()

    def make(rule: str) -> tuple[str, Path]:
        name = f"u-{uuid.uuid4().hex[:8]}"
        pw = secrets.token_hex(12)
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{pw}", *rule.split())
        made.append(name)
        f = tmp_path / f"{name}.pw"
        f.write_text(pw + "\n")
        return name, f

    yield make
    for name in made:
        admin.execute_command("ACL", "DELUSER", name)
    admin.close()


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("stream-monitor")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stream_monitor"]


def _base_env(**extra: str) -> dict[str, str]:
    """The process environment without any Kafka/Redis setting of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "REDIS_", "SM_TOPIC_"))}
    env.update(SM_METRICS_PORT="0", SM_NOTIFY_HTTP_PORT="0", SM_LOG_LEVEL="INFO",
               HOOK_SECRET=HOOK_SECRET)
    env.update(extra)
    return env


def _all_secrets(secure: Secure, *files: Path) -> list[str]:
    out = [p.read_text().strip() for p in secure.secrets.iterdir()]
    return out + [p.read_text().strip() for p in files]


# -- start-up failures -------------------------------------------------------------------------

def _targets(tmp_path: Path) -> Path:
    p = tmp_path / "notify.yaml"
    p.write_text(yaml.safe_dump({"targets": [{"name": "hook", "type": "webhook",
                                              "url": "http://127.0.0.1:9/hook",
                                              "secret_env": "HOOK_SECRET"}]}))
    return p


def _monitor_config(tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    p = tmp_path / "monitor.yaml"
    p.write_text(yaml.safe_dump({**TEST_CONFIG, **(extra or {})}))
    return p


def _run_failing(cmd: list[str], env: dict[str, str], setting: str, hidden: list[str]) -> str:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                           timeout=FAIL_FAST_SECONDS + 30)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{cmd[-3:]} hung instead of failing: {exc.stderr!r}")
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert elapsed < FAIL_FAST_SECONDS, f"took {elapsed:.1f}s: {p.stderr[-2000:]}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr  # one line: no traceback, no library log noise
    assert lines[0].startswith(f"cannot start: {setting}: "), lines[0]
    for s in hidden:
        assert s not in p.stderr + p.stdout
    return lines[0]


@pytest.mark.parametrize(("case", "setting"), [
    ("wrong_password_file", "KAFKA_SASL_PASSWORD_FILE"),
    ("wrong_password", "KAFKA_SASL_PASSWORD"),
    ("unknown_ca", "KAFKA_SSL_CA_LOCATION"),
    ("plaintext_to_tls_listener", "KAFKA_SECURITY_PROTOCOL"),
    ("mechanism_not_enabled", "KAFKA_SASL_MECHANISM"),
])
def test_notifier_start_fails_fast_naming_the_kafka_setting(secure: Secure, tmp_path: Path,
                                                            case: str, setting: str) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password-" + secrets.token_hex(4))
    env = secure.kafka_env("alice")
    if case == "wrong_password_file":
        env["KAFKA_SASL_PASSWORD_FILE"] = str(wrong)
    elif case == "wrong_password":
        del env["KAFKA_SASL_PASSWORD_FILE"]
        env["KAFKA_SASL_PASSWORD"] = wrong.read_text()
    elif case == "unknown_ca":
        env["KAFKA_SSL_CA_LOCATION"] = str(secure.other_ca)
    elif case == "plaintext_to_tls_listener":
        env = {"KAFKA_BOOTSTRAP_SERVERS": secure.bootstrap}
    elif case == "mechanism_not_enabled":
        env["KAFKA_SASL_MECHANISM"] = "PLAIN"
    line = _run_failing([*_cli(), "notify", "--targets", str(_targets(tmp_path))],
                        _base_env(**env), setting, _all_secrets(secure, wrong))
    if case.startswith("wrong_password"):
        assert "'alice'" in line and "SCRAM-SHA-512" in line


@pytest.mark.parametrize(("case", "setting"), [
    ("user_without_the_prefix", "REDIS_USERNAME"),
    ("user_without_evalsha", "REDIS_USERNAME"),
    ("wrong_password", "REDIS_PASSWORD_FILE"),
    ("unknown_ca", "REDIS_SSL_CA_CERTS"),
    ("no_tls", "REDIS_URL"),
    ("wrong_kafka_password", "KAFKA_SASL_PASSWORD_FILE"),
])
def test_worker_start_fails_fast_naming_the_setting(secure: Secure, tmp_path: Path,
                                                    acl_user: Any, case: str,
                                                    setting: str) -> None:
    prefix = f"sec-{uuid.uuid4().hex[:8]}"
    rule = minimal_acl_rule(prefix)
    if case == "user_without_the_prefix":
        rule = minimal_acl_rule("someone-else")
    elif case == "user_without_evalsha":
        rule = rule.replace(" +evalsha", "")
    user, pw_file = acl_user(rule)
    env = {**secure.kafka_env("alice"), "REDIS_URL": secure.redis_url, "REDIS_USERNAME": user,
           "REDIS_PASSWORD_FILE": str(pw_file), "REDIS_SSL_CA_CERTS": str(secure.ca),
           "SM_KEY_PREFIX": prefix}
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password-" + secrets.token_hex(4))
    if case == "wrong_password":
        env["REDIS_PASSWORD_FILE"] = str(wrong)
    elif case == "unknown_ca":
        env["REDIS_SSL_CA_CERTS"] = str(secure.other_ca)
    elif case == "no_tls":
        env["REDIS_URL"] = secure.redis_url.replace("rediss://", "redis://")
        del env["REDIS_SSL_CA_CERTS"]
    elif case == "wrong_kafka_password":
        env["KAFKA_SASL_PASSWORD_FILE"] = str(wrong)
    line = _run_failing([*_cli(), "worker", "--config", str(_monitor_config(tmp_path))],
                        _base_env(**env), setting, _all_secrets(secure, pw_file, wrong))
    if case.startswith("user_without"):
        assert f"ACL SETUSER {user} {minimal_acl_rule(prefix)}" in line


# -- the notifier end to end over SASL_SSL -----------------------------------------------------

async def test_notifier_end_to_end_over_sasl_ssl(secure: Secure, tmp_path: Path) -> None:
    u = Unique()
    admin = secure.settings()
    dlq = f"t-{u.id}-notify-dlq"
    await create_topics(admin, [*u.topics.values(), dlq])
    alert = drift_alert(model_id=f"credit-{u.id}")
    retrain = retrain_request(model_id=f"credit-{u.id}")
    await produce(admin, u.topics["alerts"], [(alert["model_id"].encode(), orjson.dumps(alert))])
    await produce(admin, u.topics["retrain"],
                  [(retrain["model_id"].encode(), orjson.dumps(retrain))])

    recv = await Receivers().start()
    proc = None
    log_path = tmp_path / "notify.log"
    try:
        hook = recv.on("/hook", statuses(200))
        broken = recv.on("/broken", statuses(400))  # rejected: dead-lettered over SASL_SSL too
        targets = tmp_path / "notify.yaml"
        targets.write_text(yaml.safe_dump({
            "topics": {"alerts": u.topics["alerts"], "retrain": u.topics["retrain"],
                       "deployments": u.topics["deployments"], "dead_letter": dlq},
            "consumer_group": f"notify-{u.id}",
            "targets": [{"name": "hook", "type": "webhook", "url": hook,
                         "secret_env": "HOOK_SECRET"},
                        {"name": "broken", "type": "webhook", "url": broken,
                         "secret_env": "HOOK_SECRET", "retry": {"max_attempts": 1}}]}))
        port = free_port()
        # bob logs in with SCRAM-SHA-256 (alice, above, with SHA-512): both mechanisms work.
        env = _base_env(**secure.kafka_env("bob", "SCRAM-SHA-256"),
                        SM_NOTIFY_HTTP_HOST="127.0.0.1", SM_NOTIFY_HTTP_PORT=str(port))
        with log_path.open("wb") as log:
            proc = subprocess.Popen([*_cli(), "notify", "--targets", str(targets)], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(recv.at("/hook")) < 2:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            await asyncio.sleep(0.3)
        assert sorted(r.json()["type"] for r in recv.at("/hook")) == ["drift_alert",
                                                                      "retrain_request"]
        dead = await consume(admin, [dlq], until=lambda m: len(m) >= 2, timeout=60)
        assert sorted(orjson.loads(m.value)["target"]["name"] for m in dead) == ["broken"] * 2
        ready_status, ready = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz")
        _, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        assert ready_status == 200, ready
    finally:
        if proc is not None:
            stop_process(proc, timeout=30)
        await recv.stop()
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert f"{secure.bootstrap} (SASL_SSL as bob)" in text
    for s in _all_secrets(secure):
        assert s not in text and s.encode() not in ready + metrics


# -- the worker end to end ---------------------------------------------------------------------

SPEC = StreamSpec(models=("credit-risk",), events_per_model=2400, seed=11,
                  drifts=(Drift(1200, "amount", 1.5), Drift(1200, "utilization", -1.5)))
# Duplicate claims run the dedupe store's Lua script too: every store command meets the ACL.
WORKER_CONFIG = {"quality": {"duplicates": {"window_seconds": 600}}}


def _worker_outputs(kafka: Any, env: dict[str, str], u: Unique, config: Path, lines: list[bytes],
                    log: Path) -> list[dict[str, Any]]:
    asyncio.run(create_topics(kafka, u.topics.values()))
    asyncio.run(produce(kafka, u.topics["inference"], ((b"credit-risk", v) for v in lines)))
    w = WorkerProcess([*_cli(), "worker", "--config", str(config)], env, log)
    try:
        wait_committed(kafka, u.app_id, u.topics["inference"], len(lines), w, timeout=180)
        msgs = asyncio.run(consume(kafka, [u.topics["alerts"], u.topics["retrain"],
                                           u.topics["dead_letter"]], timeout=20, idle=3))
    finally:
        assert w.stop() == 0, w.tail()
    out = []
    for m in msgs:
        raw = m.value
        for name, topic in u.topics.items():  # the run's own topic names are not the output
            raw = raw.replace(topic.encode(), f"<{name}>".encode())
        rec = orjson.loads(raw)
        if rec.get("type") == "dead_letter":  # per run: wall-clock times; id hashes the topic
            del rec["source"]["timestamp_ms"], rec["dead_letter_id"], rec["dead_lettered_at"]
        out.append({"topic": m.topic.split(u.id)[-1], "key": m.key, "record": rec})
    return sorted(out, key=lambda r: orjson.dumps(r["record"], option=orjson.OPT_SORT_KEYS))


def _worker_env(u: Unique, **extra: str) -> dict[str, str]:
    env = _base_env(SM_APP_ID=u.app_id, SM_KEY_PREFIX=u.prefix, SM_BATCH_WITHIN_SECONDS="0.1",
                    **{f"SM_TOPIC_{k.upper()}": v for k, v in u.topics.items()})
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("kafka_mode", ["plaintext", "sasl_ssl"])
def test_worker_over_secure_services_equals_plaintext_run(
        secure: Secure, kafka_bootstrap: str, redis_url: str, tmp_path: Path, acl_user: Any,
        kafka_mode: str) -> None:
    """Same events, same config: the worker on plaintext Kafka + Redis, and the worker with its
    state in the TLS Redis as a user holding only the minimal ACL rule (and, with sasl_ssl, on
    the SASL_SSL listener) publish the same outputs."""
    lines = list(generate(SPEC))
    lines[100:100] = [lines[50], b"not json"]  # a duplicate and a dead letter
    config = _monitor_config(tmp_path, WORKER_CONFIG)

    plain = Unique()
    expected = _worker_outputs(kafka_bootstrap, _worker_env(
        plain, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, REDIS_URL=redis_url), plain, config,
        lines, tmp_path / "plain.log")
    assert sum(r["record"]["type"] == "drift_alert" for r in expected) >= 2

    sec = Unique()
    sec.prefix = f"sec-{sec.id}"
    user, pw_file = acl_user(minimal_acl_rule(sec.prefix))
    redis_env = {"REDIS_URL": secure.redis_url, "REDIS_USERNAME": user,
                 "REDIS_PASSWORD_FILE": str(pw_file), "REDIS_SSL_CA_CERTS": str(secure.ca)}
    if kafka_mode == "sasl_ssl":
        kafka: Any = secure.settings(**redis_env)
        kafka_env = secure.kafka_env("alice")
    else:
        kafka, kafka_env = kafka_bootstrap, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    got = _worker_outputs(kafka, _worker_env(sec, **kafka_env, **redis_env), sec, config, lines,
                          tmp_path / "secure.log")
    assert got == expected

    # The state really is in the TLS Redis, under the user's prefix only.
    admin = secure.redis_admin()
    try:
        keys = [k.decode() for k in admin.scan_iter(f"{sec.prefix}:*")]
        assert any(k.endswith(":model") for k in keys), keys
        assert all(k.startswith(f"{sec.prefix}:") for k in keys)
    finally:
        for k in admin.scan_iter(f"{sec.prefix}:*"):
            admin.delete(k)
        admin.close()
    log = (tmp_path / "secure.log").read_text()
    for s in _all_secrets(secure, pw_file):
        assert s not in log


async def test_publisher_over_sasl_ssl(secure: Secure) -> None:
    """The publisher SDK takes the worker's security variables (SCRAM over TLS, the password
    from a file, a private CA): what it sends arrives, keyed and labelled."""
    from stream_monitor.publish import Publisher, PublisherSettings

    topic = f"t-{uuid.uuid4().hex[:10]}-published"
    admin = secure.settings()
    await create_topics(admin, [topic])
    settings = PublisherSettings(**secure.kafka_env("admin"),  # type: ignore[arg-type]
                                 SM_TOPIC_INFERENCE=topic)
    async with Publisher(settings) as pub:
        for i in range(10):
            await pub.publish_inference(f"e-{i}", "credit-risk", {"amount": float(i)}, 0.5)
        await pub.flush(30)
        assert (pub.stats.delivered, pub.stats.failed) == (10, 0)
    got = await consume(admin, [topic], until=lambda m: len(m) >= 10)
    assert [orjson.loads(m.value)["event_id"] for m in got] == [f"e-{i}" for i in range(10)]
    assert {m.key for m in got} == {b"credit-risk"}
