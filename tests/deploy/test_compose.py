"""docker-compose.yml describes the whole stack. `docker compose config` cannot run here, so this
parses the file and checks what can be checked without Docker: pinned images, mounts that
exist, Prometheus targets that are compose services on the right ports, healthchecks, and
ports and env names that agree with the settings."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream_monitor.config import parse_config
from stream_monitor.notify.config import NotifySettings, parse_notify_config
from stream_monitor.settings import Settings

from .conftest import ROOT
from .test_helm import aliases

pytestmark = pytest.mark.deploy

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# Where the third-party images listen inside the network (their documented defaults).
IMAGE_PORTS = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "redis": 6379}
IMAGE_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
                      r"(@sha256:[0-9a-f]{64})?$")


def env(service: str) -> dict[str, str]:
    e = SERVICES[service].get("environment", {})
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: str(v) for k, v in e.items()}


def mounts(service: str) -> list[tuple[str, str, bool]]:
    """(source, target, is_bind) of a service's short-syntax volumes."""
    out = []
    for v in SERVICES[service].get("volumes", []):
        parts = v.split(":")
        src, target = parts[0], parts[1]
        out.append((src, target, src.startswith((".", "/"))))
    return out


def repo_path(src: str) -> Any:
    assert src.startswith("./"), f"{src}: bind mounts should be relative to the repo"
    return ROOT / src[2:]


def container_file(service: str, target: str) -> Any:
    """The repo file a service sees at `target` (a mounted file, or a file in a mounted dir)."""
    t = PurePosixPath(target)
    for src, dst, bind in mounts(service):
        if not bind:
            continue
        d = PurePosixPath(dst)
        if t == d:
            return repo_path(src)
        if d in t.parents:
            return repo_path(src) / t.relative_to(d)
    raise AssertionError(f"{service} has nothing mounted at {target}")


def listen_port(service: str) -> int:
    """The port a service listens on inside the compose network."""
    if service == "worker":
        return int(env("worker").get("SM_METRICS_PORT",
                                     Settings.model_fields["metrics_port"].default))
    if service == "notifier":
        return int(env("notifier").get("SM_NOTIFY_HTTP_PORT",
                                        NotifySettings.model_fields["http_port"].default))
    return IMAGE_PORTS[service]


def test_the_stack_has_every_service() -> None:
    assert set(SERVICES) == {"kafka", "redis", "worker", "notifier", "prometheus",
                             "alertmanager", "grafana"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_images_are_pinned_to_exact_tags(service: str) -> None:
    image = SERVICES[service]["image"]
    m = IMAGE_RE.match(image)
    assert m, f"{service}: {image!r} has no tag"
    tag = m["tag"]
    assert tag != "latest" and not re.fullmatch(r"v?\d+(\.\d+)?(-[a-z]+)?", tag), (
        f"{service}: {image} is not an exact version (want e.g. 7.4.6-alpine, v3.5.0)")
    if "build" in SERVICES[service] or m["name"] == "stream-monitor":
        assert tag == VERSION, f"{service}: the locally built image is tagged {VERSION}"


def test_image_pin_check_can_fail() -> None:
    for bad in ("redis", "redis:latest", "grafana/grafana"):
        m = IMAGE_RE.match(bad)
        assert m is None or m["tag"] == "latest"
    assert re.fullmatch(r"v?\d+(\.\d+)?(-[a-z]+)?", "7-alpine")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_mount_sources_exist_and_named_volumes_are_declared(service: str) -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for src, target, bind in mounts(service):
        if bind:
            assert repo_path(src).exists(), f"{service}: {src} is not in the repo"
        else:
            assert src in declared, f"{service}: volume {src} is not declared"
        assert target.startswith("/")


def test_prometheus_scrapes_compose_services_and_loads_the_rules() -> None:
    cfg_path = container_file("prometheus", "/etc/prometheus/prometheus.yml")
    cmd = SERVICES["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in cmd
    cfg = yaml.safe_load(cfg_path.read_text())
    jobs = {}
    for job in cfg["scrape_configs"]:
        for sc in job["static_configs"]:
            for target in sc["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in SERVICES, f"{job['job_name']} scrapes {host}, not a service"
                assert int(port) == listen_port(host), f"{target}: {host} listens elsewhere"
                jobs[job["job_name"]] = host
    assert set(jobs.values()) >= {"worker", "notifier"}
    # Rule files resolve against the config file's directory, inside the container.
    for rf in cfg["rule_files"]:
        path = container_file("prometheus", str(PurePosixPath("/etc/prometheus") / rf))
        assert path.is_file(), rf
        assert yaml.safe_load(path.read_text())["groups"]
    # The rules' `up{job=...}` alerts name the jobs Prometheus scrapes.
    rules = container_file("prometheus", "/etc/prometheus/stream-monitor-rules.yml").read_text()
    named = set(re.findall(r'job="([^"]+)"', rules))
    assert named and named <= set(jobs)
    for am in cfg["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            for target in sc["targets"]:
                host, port = target.rsplit(":", 1)
                assert host == "alertmanager" and int(port) == listen_port(host)


def test_alertmanager_grafana_and_notifier_configs_are_mounted_and_valid() -> None:
    am = yaml.safe_load(container_file("alertmanager",
                                       "/etc/alertmanager/alertmanager.yml").read_text())
    assert am["route"]["receiver"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in SERVICES["alertmanager"]["command"]
    # Grafana: the data source is the compose Prometheus; the dashboard provider reads the
    # folder the dashboard is mounted in.
    (ds,) = yaml.safe_load(container_file(
        "grafana", "/etc/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    url = urlsplit(ds["url"])
    assert ds["type"] == "prometheus" and ds["isDefault"] is True
    assert url.hostname == "prometheus" and url.port == listen_port("prometheus")
    (prov,) = yaml.safe_load(container_file(
        "grafana", "/etc/grafana/provisioning/dashboards/stream-monitor.yml").read_text()
    )["providers"]
    dash = container_file("grafana", str(PurePosixPath(prov["options"]["path"])
                                         / "stream-monitor.json"))
    assert dash == ROOT / "deploy" / "grafana" / "stream-monitor.json"
    board = json.loads(dash.read_text())
    assert {i["pluginId"] for i in board.get("__inputs", [])} <= {ds["type"]}
    # The notifier forwards to the compose Alertmanager.
    notify = parse_notify_config(yaml.safe_load(container_file(
        "notifier", "/etc/stream-monitor/notify.yaml").read_text()), "compose notify.yaml")
    am_targets = [t for t in notify.targets if t.type == "alertmanager"]
    assert am_targets
    for t in am_targets:
        u = urlsplit(t.url)  # type: ignore[arg-type]
        assert u.hostname == "alertmanager" and u.port == listen_port("alertmanager")


@pytest.mark.parametrize(("service", "flag", "subcommand"), [
    ("worker", "--config", "worker"), ("notifier", "--targets", "notify")])
def test_app_commands_read_mounted_configs(service: str, flag: str, subcommand: str) -> None:
    cmd = SERVICES[service]["command"]
    assert cmd[:2] == ["stream-monitor", subcommand]
    path = container_file(service, cmd[cmd.index(flag) + 1])
    raw = yaml.safe_load(path.read_text())
    if service == "worker":
        parse_config(raw, str(path))
    else:
        parse_notify_config(raw, str(path))


def test_ports_and_addresses_agree_with_the_settings() -> None:
    defaults = {"worker": Settings.model_fields["metrics_port"].default,
                "notifier": NotifySettings.model_fields["http_port"].default}
    for service, var in [("worker", "SM_METRICS_PORT"), ("notifier", "SM_NOTIFY_HTTP_PORT")]:
        port = listen_port(service)
        assert port == defaults[service], (
            f"{service}: {var}={port} differs from the default; keep the documented default")
        published = [p for p in SERVICES[service]["ports"] if str(p).endswith(f":{port}")]
        assert published, f"{service} does not publish {port}"
        test = " ".join(SERVICES[service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in test
    kafka_env = env("kafka")
    listeners = dict(re.findall(r"(\w+)://[^:]*:(\d+)", kafka_env["KAFKA_LISTENERS"]))
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    for service in ("worker", "notifier"):
        host, kport = env(service)["KAFKA_BOOTSTRAP_SERVERS"].split(":")
        assert host == "kafka" and kport == listeners["PLAINTEXT"]
        assert f"PLAINTEXT://kafka:{kport}" in advertised
    redis = urlsplit(env("worker")["REDIS_URL"])
    assert redis.hostname == "redis" and redis.port == listen_port("redis")


def test_env_names_are_settings() -> None:
    assert set(env("worker")) <= aliases(Settings)
    assert set(env("notifier")) <= aliases(NotifySettings)


@pytest.mark.parametrize("service", ["kafka", "redis", "worker", "notifier"])
def test_healthchecks(service: str) -> None:
    hc = SERVICES[service]["healthcheck"]
    assert hc["test"][0] in ("CMD", "CMD-SHELL") and len(hc["test"]) > 1
    assert hc.get("retries", 0) >= 3


def test_depends_on_healthy_only_where_there_is_a_healthcheck() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        for dep, how in (deps.items() if isinstance(deps, dict) else ()):
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if how.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy"


def test_state_survives_restarts() -> None:
    cmd = SERVICES["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(t == "/data" and not bind for _, t, bind in mounts("redis"))
    log_dirs = env("kafka")["KAFKA_LOG_DIRS"]
    assert any(t == log_dirs and not bind for _, t, bind in mounts("kafka"))
