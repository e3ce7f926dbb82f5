"""The Helm chart (deploy/helm/stream-monitor): lints, renders, validates against the Kubernetes
schemas (kubernetes-validate), KEDA's CRDs and the ServiceMonitor CRD, and agrees with the
worker's settings. No cluster needed: Helm and the CRDs come from scripts/tools.sh."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from stream_monitor.config import Topics, parse_config
from stream_monitor.core.plan import MonitorPlan
from stream_monitor.notify.config import NotifySettings, parse_notify_config
from stream_monitor.observability.http import HealthServer
from stream_monitor.settings import Settings

from ..helpers import DELETE, replaced
from .conftest import ROOT, Tools

pytestmark = pytest.mark.deploy

CHART = ROOT / "deploy" / "helm" / "stream-monitor"
VALUES_ALL = Path(__file__).with_name("values-all.yaml")
VALUE_SETS = {"default": [], "all-on": [VALUES_ALL]}
# The chart's kubeVersion floor, and the newest schemas kubernetes-validate ships.
_FLOOR = re.search(r"(\d+)\.(\d+)", yaml.safe_load((CHART / "Chart.yaml").read_text())
                   ["kubeVersion"])
assert _FLOOR is not None
_NEWEST = kubernetes_validate.latest_version().split(".")
KUBE_VERSIONS = [f"{_FLOOR[1]}.{_FLOOR[2]}.0", f"{_NEWEST[0]}.{_NEWEST[1]}.0"]
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
             ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
             ("monitoring.coreos.com/v1", "ServiceMonitor"):
                 "monitoring.coreos.com_servicemonitors.yaml"}

# Env names the chart sets that other branches add to the settings: the Kafka/Redis security
# and Redis Cluster settings (security and cluster helpers) and the shutdown deadline (the
# worker rewrite). Each is asserted as soon as the settings define it (or, for `X_FILE`, X).
PENDING_ENV = {
    "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION",
    "KAFKA_SSL_KEY_LOCATION", "KAFKA_SSL_KEY_PASSWORD_FILE", "KAFKA_SSL_CHECK_HOSTNAME",
    "REDIS_USERNAME", "REDIS_PASSWORD_FILE", "REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE",
    "REDIS_SSL_KEYFILE", "REDIS_CLUSTER", "SM_SHUTDOWN_TIMEOUT_SECONDS",
}


def helm(tools: Tools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], capture_output=True, text=True, check=False)


def render(tools: Tools, values: list[Path], *sets: str,
           kube_version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    args = ["template", "sm", str(CHART), "--kube-version", kube_version]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    res = helm(tools, *args)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (d,) = [d for d in by_kind(docs, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return d


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def aliases(settings: type[Any]) -> set[str]:
    out: set[str] = set()
    for f in settings.model_fields.values():
        a = f.validation_alias
        if isinstance(a, str):
            out.add(a)
        elif isinstance(a, AliasChoices):
            out.update(c for c in a.choices if isinstance(c, str))
    return out


def values(*files: Path) -> dict[str, Any]:
    v = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        v = _merge(v, yaml.safe_load(f.read_text()))
    return v


def _merge(a: Any, b: Any) -> Any:
    """Helm's merge of a values file over the defaults: maps key by key, the rest replaced."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, vb in b.items():
            out[k] = _merge(a[k], vb) if k in a else vb
        return out
    return b


# ---------------------------------------------------------------------------------------------
# Lint, render, validate


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint(tools: Tools, name: str) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSIONS[-1]]
    for v in VALUE_SETS[name]:
        args += ["-f", str(v)]
    res = helm(tools, *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_manifests_validate_against_kubernetes_schemas(tools: Tools, name: str,
                                                                kube_version: str) -> None:
    docs = render(tools, VALUE_SETS[name], kube_version=kube_version)
    kinds = set()
    for d in docs:
        key = (d["apiVersion"], d["kind"])
        kinds.add(d["kind"])
        if key in CRD_KINDS:
            continue
        # strict: unknown fields are errors (as kubectl's strict field validation).
        kubernetes_validate.validate(d, kube_version, strict=True)
    expected = {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    if name == "all-on":
        expected |= {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
    assert kinds == expected


def test_kubernetes_validation_can_fail(tools: Tools) -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)
    # A misspelt field in a rendered pod is refused too.
    dep = deployment(render(tools, []), "worker")
    container(dep)["livenesProbe"] = container(dep).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(dep, KUBE_VERSIONS[-1], strict=True)


def _strict(schema: Any) -> Any:
    """A CRD's schema with unknown fields refused, as the API server's strict field validation
    does (a structural schema prunes them; `x-kubernetes-preserve-unknown-fields` keeps them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_validator(tools: Tools, api_version: str, kind: str) -> jsonschema.Validator:
    folder = tools.keda_crds if api_version.startswith("keda.sh/") else \
        tools.prometheus_operator_crds
    crd = yaml.safe_load((folder / CRD_KINDS[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert v["served"] and v["storage"]
    schema = _strict(v["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for({"$schema": "http://json-schema.org/draft-07/schema#"})
    cls.check_schema(schema)
    return cls(schema)


def test_custom_resources_validate_against_their_crds(tools: Tools) -> None:
    """ScaledObject and TriggerAuthentication against KEDA 2.21.0's CRDs, ServiceMonitor
    against the Prometheus Operator's."""
    docs = render(tools, [VALUES_ALL])
    crd_docs = [d for d in docs if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    assert {d["kind"] for d in crd_docs} == {"ScaledObject", "TriggerAuthentication",
                                             "ServiceMonitor"}
    for d in crd_docs:
        crd_validator(tools, d["apiVersion"], d["kind"]).validate(d)
    # Plain Kafka: a ScaledObject without credentials.
    plain = render(tools, [], "autoscaling.enabled=true")
    (so,) = by_kind(plain, "ScaledObject")
    assert "authenticationRef" not in so["spec"]["triggers"][0]
    assert not by_kind(plain, "TriggerAuthentication")
    crd_validator(tools, so["apiVersion"], so["kind"]).validate(so)


def test_crd_validation_can_fail(tools: Tools) -> None:
    (so,) = by_kind(render(tools, [VALUES_ALL]), "ScaledObject")
    v = crd_validator(tools, so["apiVersion"], so["kind"])
    for path, value in [(("spec", "maxReplicaCount"), "ten"), (("spec", "pollingIntervall"), 5),
                        (("spec", "triggers"), DELETE)]:
        with pytest.raises(jsonschema.ValidationError):
            v.validate(replaced(so, path, value))


# ---------------------------------------------------------------------------------------------
# KEDA: the Kafka scaler on the worker's group, capped at the partition count


def test_scaled_object_watches_the_workers_group_on_the_inference_topic(tools: Tools) -> None:
    docs = render(tools, [VALUES_ALL])
    (so,) = by_kind(docs, "ScaledObject")
    worker = deployment(docs, "worker")
    env = env_of(container(worker))
    assert so["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == env["SM_APP_ID"]
    assert meta["topic"] == env["SM_TOPIC_INFERENCE"]
    assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
    assert meta["allowIdleConsumers"] == "false"
    # With KEDA on, the HPA owns the replica count.
    assert "replicas" not in worker["spec"]
    (auth,) = by_kind(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"password": ("kafka-user", "password"), "ca": ("kafka-client-tls", "ca.crt"),
                    "cert": ("kafka-client-tls", "tls.crt"), "key": ("kafka-client-tls", "tls.key"),
                    "keyPassword": ("kafka-client-tls", "key-password")}


def test_max_replicas_default_to_the_partition_count(tools: Tools) -> None:
    docs = render(tools, [], "autoscaling.enabled=true", "inferenceTopic.partitions=6")
    (so,) = by_kind(docs, "ScaledObject")
    assert so["spec"]["maxReplicaCount"] == 6
    docs = render(tools, [], "autoscaling.enabled=true", "inferenceTopic.partitions=6",
                  "autoscaling.maxReplicaCount=4")
    assert by_kind(docs, "ScaledObject")[0]["spec"]["maxReplicaCount"] == 4


def test_max_replicas_above_the_partition_count_fail_to_render(tools: Tools) -> None:
    res = helm(tools, "template", "sm", str(CHART), "--kube-version", KUBE_VERSIONS[-1],
               "--set", "autoscaling.enabled=true", "--set", "inferenceTopic.partitions=6",
               "--set", "autoscaling.maxReplicaCount=7")
    assert res.returncode != 0
    assert "autoscaling.maxReplicaCount (7) is above inferenceTopic.partitions (6)" in res.stderr
    assert "idle" in res.stderr


@pytest.mark.parametrize(("sets", "message"), [
    (["kafka.securityProtocol=SASL_SSL"], "needs kafka.sasl.username"),
    # values.schema.json: enums, ranges, and unknown keys (a typo is not ignored silently).
    (["kafka.securityProtocol=TLS"], "at '/kafka/securityProtocol': value must be one of"),
    (["autoscalling.enabled=true"], "additional properties 'autoscalling' not allowed"),
    (["worker.shutdownTimeoutSecond=60"], "'shutdownTimeoutSecond' not allowed"),
    (["inferenceTopic.partitions=0"], "at '/inferenceTopic/partitions'"),
    (["redis.url=localhost:6379"], "at '/redis/url'"),
    (["worker.metricsPort=0"], "worker.metricsPort must be 1-65535"),
    (["worker.replicaCount=4", "inferenceTopic.partitions=3"],
     "worker.replicaCount (4) is above inferenceTopic.partitions (3)"),
    (["autoscaling.enabled=true", "autoscaling.minReplicaCount=20",
      "inferenceTopic.partitions=12"], "minReplicaCount (20) is above maxReplicaCount (12)"),
])
def test_bad_values_fail_with_the_field_and_the_fix(tools: Tools, sets: list[str],
                                                    message: str) -> None:
    args = ["template", "sm", str(CHART), "--kube-version", KUBE_VERSIONS[-1]]
    for s in sets:
        args += ["--set", s]
    res = helm(tools, *args)
    assert res.returncode != 0 and message in res.stderr, res.stderr


# ---------------------------------------------------------------------------------------------
# Pods: shutdown, security, secrets as files


@pytest.mark.parametrize("name", VALUE_SETS)
def test_grace_period_is_the_shutdown_deadline_plus_a_margin(tools: Tools, name: str) -> None:
    docs = render(tools, VALUE_SETS[name])
    v = values(*VALUE_SETS[name])["worker"]
    worker = deployment(docs, "worker")
    env = env_of(container(worker))
    deadline = int(env["SM_SHUTDOWN_TIMEOUT_SECONDS"])
    assert deadline == v["shutdownTimeoutSeconds"]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == deadline + v["terminationGraceMarginSeconds"] > deadline


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_run_non_root_on_a_read_only_root_with_writable_emptydirs(tools: Tools,
                                                                       name: str) -> None:
    docs = render(tools, VALUE_SETS[name])
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    assert re.search(rf"^USER {uid}(:\d+)?$", dockerfile, re.M)
    for dep in by_kind(docs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        c = container(dep)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        writable = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty}
        assert "/tmp" in writable
        env = env_of(c)
        if "SM_DATA_DIR" in env:
            assert env["SM_DATA_DIR"] in writable


def test_secrets_reach_the_pods_as_files_only(tools: Tools) -> None:
    docs = render(tools, [VALUES_ALL])
    for dep in by_kind(docs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        c = container(dep)
        env = env_of(c)
        secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        file_env = {k: v for k, v in env.items() if k.endswith(("_FILE", "_LOCATION"))
                    or k.startswith("REDIS_SSL_")}
        assert file_env, dep["metadata"]["name"]
        for name, path in file_env.items():
            folder, key = path.rsplit("/", 1)
            assert mounts.get(folder) in secret_volumes, (name, path)
            sec = secret_volumes[mounts[folder]]
            if "items" in sec:
                assert key in {i["path"] for i in sec["items"]}, (name, path)
            assert all(m.get("readOnly") for m in c["volumeMounts"]
                       if m["name"] in secret_volumes)
        # No password in a plain env value; the notifier's target secrets come by secretKeyRef.
        for e in c["env"]:
            assert "PASSWORD" not in e["name"] or e["name"].endswith("_FILE")
    notifier = env_of(container(deployment(docs, "notifier")))
    assert notifier["PAGERDUTY_ROUTING_KEY"] == {
        "secretKeyRef": {"name": "pagerduty", "key": "routing-key"}}


def test_pdbs_select_their_deployments(tools: Tools) -> None:
    docs = render(tools, [VALUES_ALL])
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert len(pdbs) == 2
    for pdb in pdbs:
        sel = pdb["spec"]["selector"]["matchLabels"]
        (dep,) = [d for d in by_kind(docs, "Deployment")
                  if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert pdb["spec"]["maxUnavailable"] == 1
        assert dep["spec"]["selector"]["matchLabels"] == sel


def test_service_monitor_scrapes_both_components(tools: Tools) -> None:
    docs = render(tools, [VALUES_ALL])
    (sm,) = by_kind(docs, "ServiceMonitor")
    sel = sm["spec"]["selector"]["matchLabels"]
    services = [s for s in by_kind(docs, "Service")
                if sel.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in services} == {
        "worker", "notifier"}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics"
    for s in services:
        assert ep["port"] in {p["name"] for p in s["spec"]["ports"]}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_config_change_rolls_the_pods(tools: Tools) -> None:
    a = deployment(render(tools, []), "worker")
    b = deployment(render(tools, [], "config.windows.reference_size=500"), "worker")
    key = "checksum/config"
    assert (a["spec"]["template"]["metadata"]["annotations"][key]
            != b["spec"]["template"]["metadata"]["annotations"][key])


# ---------------------------------------------------------------------------------------------
# The chart and the application agree


@pytest.mark.parametrize("name", VALUE_SETS)
def test_configmap_holds_valid_monitor_and_notify_configs(tools: Tools, name: str) -> None:
    docs = render(tools, VALUE_SETS[name])
    (cm,) = by_kind(docs, "ConfigMap")
    cfg = parse_config(yaml.safe_load(cm["data"]["monitor.yaml"]), "chart config")
    assert isinstance(cfg, MonitorPlan)
    parse_notify_config(yaml.safe_load(cm["data"]["notify.yaml"]), "chart notifier.config")
    for dep in by_kind(docs, "Deployment"):
        c = container(dep)
        flag, path = c["args"][2], c["args"][3]
        (m,) = [m for m in c["volumeMounts"] if m["mountPath"] == path]
        assert m["subPath"] in cm["data"]
        assert flag == {"worker": "--config", "notifier": "--targets"}[c["name"]]
        assert c["args"][:2] == ["stream-monitor", {"worker": "worker",
                                                     "notifier": "notify"}[c["name"]]]
    if name == "all-on":
        assert cfg.topics.inference == values(VALUES_ALL)["inferenceTopic"]["name"]


def test_chart_defaults_agree_with_the_settings(tools: Tools) -> None:
    v = values()
    s = Settings()  # type: ignore[call-arg]  # from the environment
    ns = NotifySettings()  # type: ignore[call-arg]
    assert v["worker"]["metricsPort"] == Settings.model_fields["metrics_port"].default
    assert v["notifier"]["httpPort"] == NotifySettings.model_fields["http_port"].default
    assert v["worker"]["appId"] == Settings.model_fields["app_id"].default
    assert v["inferenceTopic"]["name"] == Topics().inference
    if "shutdown_timeout_seconds" in Settings.model_fields:
        assert (v["worker"]["shutdownTimeoutSeconds"]
                == Settings.model_fields["shutdown_timeout_seconds"].default)
    assert s and ns  # both load from the environment without errors
    # The probe paths are routes of the health server.
    routes = {r.resource.canonical for r in HealthServer(None).app.router.routes()  # type: ignore[arg-type]
              if r.resource is not None}
    docs = render(tools, [])
    for comp in ("worker", "notifier"):
        c = container(deployment(docs, comp))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                assert c[probe]["httpGet"]["path"] in routes
                assert c[probe]["httpGet"]["port"] == c["ports"][0]["name"]
        assert c["ports"][0]["containerPort"] == (v["worker"]["metricsPort"] if comp == "worker"
                                                  else v["notifier"]["httpPort"])
    assert {"/healthz", "/readyz", "/metrics"} <= routes


def all_settings_names() -> set[str]:
    """Env names of every settings class in the package (pydantic BaseSettings subclasses)."""
    import importlib
    import pkgutil

    from pydantic_settings import BaseSettings

    import stream_monitor

    names: set[str] = set()
    for m in pkgutil.walk_packages(stream_monitor.__path__, "stream_monitor."):
        if m.name.endswith(("__main__", ".cli", ".demo", ".plot")):
            continue
        mod = importlib.import_module(m.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings:
                names |= aliases(obj)
    return names


def _defined(name: str, known: set[str]) -> bool:
    return name in known or (name.endswith("_FILE") and name.removesuffix("_FILE") in known)


def _check_env_names(names: set[str], known: set[str],
                     anywhere: set[str] | None = None) -> list[str]:
    """Names the process's settings (``known``) do not define. A name of PENDING_ENV is let
    through only while no settings class of the package (``anywhere``) defines it, i.e. while
    the branch that adds it is not merged."""
    anywhere = known if anywhere is None else anywhere
    return [n for n in sorted(names)
            if not _defined(n, known) and not (n in PENDING_ENV and not _defined(n, anywhere))]


def test_every_env_name_the_chart_sets_is_a_setting(tools: Tools) -> None:
    """Names from other branches (PENDING_ENV) are asserted once a settings class has them:
    then the worker's and the notifier's settings must both read what the chart sets."""
    docs = render(tools, [VALUES_ALL])
    worker = set(env_of(container(deployment(docs, "worker"))))
    notifier = set(env_of(container(deployment(docs, "notifier"))))
    v = values(VALUES_ALL)
    # Names the values file passes through on purpose (worker.env, notifier secrets/env).
    passed = set(v["worker"]["env"]) | {e["name"] for e in v["worker"]["extraEnv"]}
    passed_n = ({e["name"] for e in v["notifier"]["secretEnv"]} | set(v["notifier"]["env"])
                | {e["name"] for e in v["notifier"]["extraEnv"]})
    anywhere = all_settings_names()
    known, known_n = aliases(Settings), aliases(NotifySettings)
    assert known | known_n <= anywhere
    assert _check_env_names(worker - passed, known, anywhere) == []
    assert _check_env_names(notifier - passed_n, known_n, anywhere) == []
    # The settings the values pass through exist (the targets' own secrets aside).
    assert _check_env_names(set(v["worker"]["env"]), known) == []
    assert _check_env_names(set(v["notifier"]["env"]), known_n) == []
    # A pending name that is a setting now must be set by the chart (all options are on here).
    for n in PENDING_ENV:
        if _defined(n, known):
            assert n in worker, f"{n} is a worker setting now; the chart should set it"


def test_env_name_check_can_fail() -> None:
    assert _check_env_names({"SM_METRICS_PORT", "SM_NO_SUCH_SETTING"},
                            aliases(Settings)) == ["SM_NO_SUCH_SETTING"]
    # A pending name is let through only while no settings class defines it.
    assert _check_env_names({"REDIS_CLUSTER"}, set(), set()) == []
    assert _check_env_names({"REDIS_CLUSTER"}, set(), {"REDIS_CLUSTER"}) == ["REDIS_CLUSTER"]
