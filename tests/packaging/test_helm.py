"""The Helm chart `helm/deploy-guard`, rendered and validated offline (docs/helm.md).

No helm binary and no cluster: helm-python-sdk renders the chart through Helm v4's Go SDK
(the same engine as `helm template`, values.schema.json enforced), and every manifest is
validated by kubernetes-validate in strict mode (unknown fields are errors) against the
oldest and the newest Kubernetes the chart supports. kubernetes-validate has no schema for
the Prometheus Operator's ServiceMonitor and PrometheusRule, so their structure is checked
here. The rendered guard configuration goes through the guard's own `check`, so the chart
can only ship a configuration the guard accepts.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
)
from pydantic import BaseModel

from guard.config import models
from guard.config.check import check
from guard.defaults import RULES_DIR

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "deploy-guard"
SQLITE_VALUES = CHART / "ci" / "sqlite-values.yaml"
HA_VALUES = CHART / "ci" / "ha-values.yaml"
RELEASE = "deploy-guard"
NAMESPACE = "guard"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate 1.37 ships.
KUBE_VERSIONS = ("1.33.0", "1.37.0")
# What the Secret named in ci/ha-values.yaml holds (its comment says so); in a cluster
# envFrom turns each key into an environment variable.
HA_SECRET_ENV = {
    "GUARD_STORE__URL": "postgresql+psycopg://guard:not-a-password@10.0.0.5:5432/guard",
    "GUARD_NOTIFIERS__ONCALL__ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "GUARD_NOTIFIERS__TEAM_SLACK__WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/X",
}
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

Manifest = dict[str, Any]


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, maps merged key by key (like a second `helm -f`)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: dict[str, Any] | None) -> list[Manifest]:
    """`helm template deploy-guard CHART -n guard -f values`: every manifest, parsed."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    manifests: list[Manifest] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return manifests


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(manifests: list[Manifest]) -> dict[str, Any]:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    guard: dict[str, Any] = pod["containers"][0]
    return guard


def config_map_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap", name)["data"]
    return data


@pytest.fixture(scope="module")
def sqlite_values() -> dict[str, Any]:
    return load_yaml(SQLITE_VALUES)


@pytest.fixture(scope="module")
def ha_values() -> dict[str, Any]:
    return load_yaml(HA_VALUES)


@pytest.fixture(scope="module")
def default_render(sqlite_values: dict[str, Any]) -> list[Manifest]:
    return render(sqlite_values)


@pytest.fixture(scope="module")
def ha_render(ha_values: dict[str, Any]) -> list[Manifest]:
    return render(ha_values)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No GUARD_ variable from the developer's shell leaks into the guard's config check."""
    for var in list(os.environ):
        if var.upper().startswith("GUARD_"):
            monkeypatch.delenv(var)
    return monkeypatch


# --- validation of every manifest -----------------------------------------------------------


def check_service_monitor(monitor: Manifest, manifests: list[Manifest]) -> None:
    """A minimal structural check: kubernetes-validate has no schema for this CRD."""
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    service = one(manifests, "Service")
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "selects no Service"
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert endpoint["scheme"] == "http"
        assert DURATION.match(endpoint["interval"])
        assert DURATION.match(endpoint["scrapeTimeout"])


def check_prometheus_rule(rule: Manifest) -> None:
    """A minimal structural check of a PrometheusRule (the CRD's required shape)."""
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    assert isinstance(groups, list)
    assert groups
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), "group names must be unique"
    for group in groups:
        assert isinstance(group["name"], str)
        assert group["name"]
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        assert isinstance(group["rules"], list)
        for r in group["rules"]:
            assert set(r) <= {
                "alert",
                "record",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            }
            assert ("alert" in r) != ("record" in r), f"alert xor record: {r}"
            assert isinstance(r["expr"], str | int)
            for key in ("for", "keep_firing_for"):
                if key in r:
                    assert DURATION.match(r[key]), f"{key}: {r[key]!r}"
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(key, {}).values())


def validate_all(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        assert manifest["metadata"]["namespace"] == NAMESPACE
        if manifest["apiVersion"] == PROMETHEUS_OPERATOR:
            if manifest["kind"] == "ServiceMonitor":
                check_service_monitor(manifest, manifests)
            else:
                assert manifest["kind"] == "PrometheusRule"
                check_prometheus_rule(manifest)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_default_render_is_valid_kubernetes(default_render: list[Manifest]) -> None:
    validate_all(default_render)
    assert sorted(m["kind"] for m in default_render) == [
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
    ]


def test_ha_render_is_valid_kubernetes(ha_render: list[Manifest]) -> None:
    validate_all(ha_render)
    assert sorted(m["kind"] for m in ha_render) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_strict_validation_catches_a_misspelt_field(default_render: list[Manifest]) -> None:
    """The validator is not a no-op: one unknown field in the pod spec fails it."""
    deployment = copy.deepcopy(one(default_render, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_kubernetes_validate_has_no_schema_for_prometheus_operator_kinds(
    ha_render: list[Manifest],
) -> None:
    """Why ServiceMonitor and PrometheusRule are checked by hand above."""
    for kind in ("ServiceMonitor", "PrometheusRule"):
        with pytest.raises(SchemaNotFoundError):
            kubernetes_validate.validate(one(ha_render, kind), KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("values_file", [SQLITE_VALUES, HA_VALUES], ids=["sqlite", "ha"])
def test_helm_lint_is_clean(values_file: Path) -> None:
    report = helm.lint(
        CHART, load_yaml(values_file), strict=True, namespace=NAMESPACE, kube_version="v1.33.0"
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --- the SQLite mode (the default) --------------------------------------------------------------


def test_default_is_one_replica_on_sqlite_with_a_volume(default_render: list[Manifest]) -> None:
    deployment = one(default_render, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = one(default_render, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container(default_render)["volumeMounts"]}
    assert mounts == {"config": "/etc/deploy-guard", "tmp": "/tmp", "data": "/var/lib/deploy-guard"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}
    config = yaml.safe_load(config_map_data(default_render, RELEASE)["config.yaml"])
    assert config["store"] == {"url": "sqlite:////var/lib/deploy-guard/guard.db"}
    assert "env" not in container(default_render)
    assert "envFrom" not in container(default_render)
    assert find(default_render, "PodDisruptionBudget") == []


@pytest.mark.parametrize(
    ("sqlite", "class_name"),
    [({"storageClass": "premium-rwo"}, "premium-rwo"), ({"storageClass": "-"}, "")],
)
def test_storage_class(
    sqlite_values: dict[str, Any], sqlite: dict[str, Any], class_name: str
) -> None:
    claim = one(
        render(merged(sqlite_values, {"store": {"sqlite": sqlite}})), "PersistentVolumeClaim"
    )
    assert claim["spec"]["storageClassName"] == class_name


def test_existing_claim(sqlite_values: dict[str, Any]) -> None:
    manifests = render(merged(sqlite_values, {"store": {"sqlite": {"existingClaim": "guard-db"}}}))
    validate_all(manifests)
    assert find(manifests, "PersistentVolumeClaim") == []
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"] == {"claimName": "guard-db"}


def test_guard_runs_its_config_with_probes_on_health_endpoints(
    default_render: list[Manifest],
) -> None:
    guard = container(default_render)
    assert guard["image"] == (
        "europe-west1-docker.pkg.dev/example-project-123/deploy-guard/deploy-guard:0.1.0"
    )
    assert guard["args"] == ["run", "/etc/deploy-guard/config.yaml"]
    assert guard["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert guard["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert guard["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert guard["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "cpu" not in guard["resources"]["limits"]
    config = yaml.safe_load(config_map_data(default_render, RELEASE)["config.yaml"])
    assert config["api"]["host"] == "0.0.0.0"
    assert config["api"]["port"] == 8080
    service = one(default_render, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_pod_runs_non_root_read_only_without_capabilities(default_render: list[Manifest]) -> None:
    deployment = one(default_render, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(default_render)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["runAsGroup"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Longer than the guard's shutdown_grace_seconds (20), so an action in flight finishes.
    assert pod["terminationGracePeriodSeconds"] == 30


def test_workload_identity_annotation(
    default_render: list[Manifest], sqlite_values: dict[str, Any]
) -> None:
    account = one(default_render, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "deploy-guard@example-project-123.iam.gserviceaccount.com"
    }
    pod = one(default_render, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    without = render(merged(sqlite_values, {"serviceAccount": {"gcpServiceAccount": ""}}))
    assert "annotations" not in one(without, "ServiceAccount")["metadata"]


def test_config_change_rolls_the_pods(sqlite_values: dict[str, Any]) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = one(render(values), "Deployment")["spec"]["template"]
        annotation: str = pod["metadata"]["annotations"]["checksum/config"]
        return annotation

    before = checksum(sqlite_values)
    after = checksum(merged(sqlite_values, {"config": {"dry_run": True}}))
    assert re.fullmatch("[0-9a-f]{64}", before)
    assert before != after


# --- the PostgreSQL mode (high availability) ----------------------------------------------------


def test_ha_is_several_replicas_on_postgresql_without_a_volume(ha_render: list[Manifest]) -> None:
    deployment = one(ha_render, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert find(ha_render, "PersistentVolumeClaim") == []
    pod = deployment["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"config", "tmp"}
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    config = yaml.safe_load(config_map_data(ha_render, RELEASE)["config.yaml"])
    assert "store" not in config  # the URL (with its password) comes from the Secret
    pdb = one(ha_render, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_ha_secrets_are_referenced_never_rendered(ha_render: list[Manifest]) -> None:
    assert find(ha_render, "Secret") == []
    guard = container(ha_render)
    assert guard["env"] == [
        {
            "name": "GUARD_STORE__URL",
            "valueFrom": {
                "secretKeyRef": {"name": "deploy-guard-secrets", "key": "GUARD_STORE__URL"}
            },
        },
        {
            "name": "GUARD_NOTIFIERS__AUDIT__SECRET",
            "valueFrom": {
                "secretKeyRef": {"name": "deploy-guard-audit-hook", "key": "signing-key"}
            },
        },
    ]
    assert guard["envFrom"] == [{"secretRef": {"name": "deploy-guard-secrets"}}]
    text = json.dumps(ha_render)
    for value in HA_SECRET_ENV.values():
        assert value not in text


def test_ha_monitoring_objects(ha_render: list[Manifest]) -> None:
    monitor = one(ha_render, "ServiceMonitor")
    assert monitor["apiVersion"] == PROMETHEUS_OPERATOR
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"

    rule = one(ha_render, "PrometheusRule")
    assert rule["apiVersion"] == PROMETHEUS_OPERATOR
    shipped = load_yaml(CHART / "files" / "prometheus-rules.yaml")
    assert rule["spec"]["groups"] == shipped["groups"]

    dashboard = one(ha_render, "ConfigMap", f"{RELEASE}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Deploy Guard"}
    shipped_json = (CHART / "files" / "grafana-dashboard.json").read_text(encoding="utf-8")
    assert json.loads(dashboard["data"]["deploy-guard.json"]) == json.loads(shipped_json)


def test_monitoring_objects_are_off_by_default(default_render: list[Manifest]) -> None:
    assert find(default_render, "ServiceMonitor") == []
    assert find(default_render, "PrometheusRule") == []
    assert find(default_render, "ConfigMap", f"{RELEASE}-dashboard") == []


def test_no_pdb_for_a_single_replica(ha_values: dict[str, Any]) -> None:
    """minAvailable 1 of 1 pod would block every node drain, so the budget is left out."""
    single = render(merged(ha_values, {"replicaCount": 1}))
    assert find(single, "PodDisruptionBudget") == []
    assert one(single, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


# --- the rendered configuration is one the guard accepts --------------------------------------


def write_rendered_config(manifests: list[Manifest], directory: Path) -> Path:
    """config.yaml (and rules/) as the pod sees them under /etc/deploy-guard, in `directory`."""
    config = yaml.safe_load(config_map_data(manifests, RELEASE)["config.yaml"])
    rules = find(manifests, "ConfigMap", f"{RELEASE}-rules")
    if rules:
        assert config["rules_dir"] == "/etc/deploy-guard/rules"
        (directory / "rules").mkdir()
        for name, content in rules[0]["data"].items():
            (directory / "rules" / name).write_text(content, encoding="utf-8")
        config["rules_dir"] = "rules"  # relative to the config file, like in the pod
    else:
        assert "rules_dir" not in config  # the image's built-in rules
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_default_config_passes_guard_check(
    default_render: list[Manifest], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    result = check(write_rendered_config(default_render, tmp_path))
    assert result.problems == []
    assert result.config is not None
    assert result.config.store.url.get_secret_value() == "sqlite:////var/lib/deploy-guard/guard.db"
    assert set(result.rules) == {"migration-failure", "schema-mismatch", "error-rate"}


def test_ha_config_passes_guard_check_with_the_secrets_in_the_environment(
    ha_render: list[Manifest], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    path = write_rendered_config(ha_render, tmp_path)
    for env in container(ha_render)["env"]:  # valueFrom: each needs a value in the test
        clean_env.setenv(env["name"], HA_SECRET_ENV.get(env["name"], "test-secret"))
    for name, value in HA_SECRET_ENV.items():  # envFrom: the Secret's keys
        clean_env.setenv(name, value)
    result = check(path)
    assert result.problems == []
    assert result.config is not None
    assert result.config.store.url.get_secret_value().startswith("postgresql+psycopg://")
    assert result.config.notifiers["oncall"].type == "pagerduty"
    assert result.config.leader.namespace == "prod"


def test_ha_config_holds_no_secret(
    ha_render: list[Manifest], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """Without the environment, exactly the notifiers' secrets are missing."""
    result = check(write_rendered_config(ha_render, tmp_path))
    assert sorted(p.path for p in result.problems) == [
        "notifiers.oncall.pagerduty.routing_key",
        "notifiers.team_slack.slack.webhook_url",
    ]


def test_rules_from_values_are_mounted_and_used(
    sqlite_values: dict[str, Any], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    builtin = {p.name: p.read_text(encoding="utf-8") for p in sorted(RULES_DIR.glob("*.yaml"))}
    as_mapping = yaml.safe_load(builtin.pop("error-rate.yaml"))  # a mapping works as well
    rules: dict[str, Any] = {**builtin, "error-rate.yaml": as_mapping}
    manifests = render(merged(sqlite_values, {"rules": rules}))
    validate_all(manifests)
    assert set(config_map_data(manifests, f"{RELEASE}-rules")) == set(rules)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    sources = next(v for v in pod["volumes"] if v["name"] == "config")["projected"]["sources"]
    assert [i["path"] for i in sources[1]["configMap"]["items"]] == [
        f"rules/{name}" for name in sorted(rules)
    ]
    result = check(write_rendered_config(manifests, tmp_path))
    assert result.problems == []
    assert set(result.rules) == {"migration-failure", "schema-mismatch", "error-rate"}


# --- what the chart refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicaCount": "three"}, "at '/replicaCount': got string, want integer"),
        ({"replicaCount": 0}, "at '/replicaCount'"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"store": {"type": "mysql"}}, "at '/store/type'"),
        ({"store": {"sqlite": {"size": 5}}}, "at '/store/sqlite/size'"),
        ({"probes": {"liveness": {"periodSeconds": "10s"}}}, "at '/probes/liveness"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"serviceAccount": {"gcpServiceAccount": "not-an-email"}}, "gcpServiceAccount"),
        ({"config": {"dry_run": "yes"}}, "at '/config/dry_run'"),
        ({"config": {"store": {"url": "sqlite:///x.db"}}}, "'store' not allowed"),
        ({"config": {"api": {"port": 9090}}}, "'port' not allowed"),
        (
            {"config": {"notifiers": {"pd": {"type": "pagerduty", "routing_key": "k"}}}},
            "'routing_key' not allowed",
        ),
        (
            {"envFromSecret": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]},
            "at '/envFromSecret/0/name'",
        ),
        ({"rules": {"no-extension": "x"}}, "invalid propertyName 'no-extension'"),
    ],
)
def test_schema_rejects_wrong_values(
    sqlite_values: dict[str, Any], override: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match="meet the specifications of the schema") as err:
        render(merged(sqlite_values, override))
    assert message in str(err.value)


def test_sqlite_refuses_a_second_replica(sqlite_values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        render(merged(sqlite_values, {"replicaCount": 2}))
    assert (
        "replicaCount is 2 but store.type is sqlite: SQLite allows exactly one guard per "
        "database file. Use store.type=postgresql for several replicas with leader election."
    ) in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"store": {"type": "postgresql"}},
            "store.type is postgresql but no Secret holds its URL",
        ),
        (
            {"terminationGracePeriodSeconds": 20},
            "terminationGracePeriodSeconds (20) must exceed config.shutdown_grace_seconds (20)",
        ),
        (
            {"terminationGracePeriodSeconds": 40, "config": {"shutdown_grace_seconds": 45}},
            "terminationGracePeriodSeconds (40) must exceed config.shutdown_grace_seconds (45)",
        ),
        ({"image": {"repository": ""}}, "image.repository is required"),
    ],
)
def test_template_refuses_inconsistent_values(
    sqlite_values: dict[str, Any], override: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        render(merged(sqlite_values, override))
    assert message in str(err.value)


def test_an_app_is_required(sqlite_values: dict[str, Any]) -> None:
    values = copy.deepcopy(sqlite_values)
    values["config"]["apps"] = {}
    with pytest.raises(helm.HelmRenderError, match=r"config\.apps is empty: the guard needs"):
        render(values)


def test_chart_defaults_alone_ask_for_an_app() -> None:
    """The guard cannot run without an app, and the chart cannot guess the image's registry."""
    with pytest.raises(helm.HelmRenderError, match=r"config\.apps is empty|image\.repository"):
        render(None)


def test_monitoring_files_are_required_when_enabled(sqlite_values: dict[str, Any]) -> None:
    """The shipped files parse; a chart without them would fail rather than render nothing."""
    manifests = render(
        merged(
            sqlite_values,
            {
                "metrics": {
                    "prometheusRule": {"enabled": True},
                    "grafanaDashboard": {"enabled": True},
                }
            },
        )
    )
    validate_all(manifests)
    assert one(manifests, "PrometheusRule")["spec"]["groups"]
    assert one(manifests, "ConfigMap", f"{RELEASE}-dashboard")["data"]["deploy-guard.json"]


# --- the schema follows the guard's configuration model --------------------------------------


def schema_fields(definition: dict[str, Any]) -> set[str]:
    return set(definition["properties"])


def model_fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_schema_config_keys_match_the_guard_model() -> None:
    """A field added to the guard's config must be added to values.schema.json too."""
    with (CHART / "values.schema.json").open(encoding="utf-8") as f:
        schema = json.load(f)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defs = schema["definitions"]
    config = defs["guardConfig"]["properties"]
    chart_managed = {"store", "rules_dir"}  # from the chart's store and rules values
    assert schema_fields(defs["guardConfig"]) | chart_managed == model_fields(models.GuardConfig)
    assert set(config["api"]["properties"]) | {"host", "port"} == model_fields(models.ApiConfig)
    pairs: list[tuple[dict[str, Any], type[BaseModel]]] = [
        (config["leader"], models.LeaderConfig),
        (config["google"], models.GoogleConfig),
        (defs["app"], models.AppConfig),
        (defs["service"], models.ServiceConfig),
        (defs["database"], models.DatabaseConfig),
        (defs["validation"], models.ValidationConfig),
        (defs["smoke"], models.SmokeConfig),
        (defs["restore"], models.RestoreConfig),
        (defs["paging"], models.PagingRoute),
        (defs["approver"], models.ApproverConfig),
    ]
    for definition, model in pairs:
        assert schema_fields(definition) == model_fields(model), model.__name__
    # Notifiers: every field but the secret ones (those come from the environment).
    secrets: dict[str, tuple[type[BaseModel], set[str]]] = {
        "pagerduty": (models.PagerDutyConfig, {"routing_key"}),
        "slack": (models.SlackConfig, {"webhook_url"}),
        "alertmanager": (models.AlertmanagerConfig, set()),
        "opsgenie": (models.OpsgenieConfig, {"api_key"}),
        "webhook": (models.WebhookConfig, {"secret"}),
    }
    by_type = {
        branch["if"]["properties"]["type"]["const"]: set(branch["then"]["properties"])
        for branch in defs["notifier"]["allOf"]
    }
    assert set(by_type) == set(secrets)
    for kind, (model, secret) in secrets.items():
        assert by_type[kind] == model_fields(model) - secret, kind
