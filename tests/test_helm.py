"""The Helm chart (helm/mammo-node), validated offline with the real engines.

Helm v4 itself renders and lints it (helm-python-sdk: the Helm SDK as a library, no binary,
no cluster); every manifest goes through kubernetes-validate --strict against the Kubernetes
versions the chart supports; the alerts through `promtool check rules` and `promtool test
rules`; the values through values.schema.json with jsonschema. And the node's own settings
loader reads what the chart renders, with the Secrets expanded as Kubernetes would.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import httpx
import jsonschema
import kubernetes_validate.utils as kubernetes_validate
import pytest
import sqlalchemy
import yaml

from node.config import Settings, load_settings
from node.observability.metrics import NodeMetrics
from node.synthetic.dicom import synthetic_exam
from node.writers.provenance import NODE_MANUFACTURER
from tests.harness import free_port, needs_orthanc, wait_for
from tests.postgres import postgres_server

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "mammo-node"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
#: Every version the chart supports (Chart.yaml kubeVersion >=1.30) that kubernetes-validate
#: has schemas for: the default values go through all, the examples the oldest and newest.
KUBERNETES_VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))
#: Kinds of the Prometheus Operator: CRDs, which kubernetes-validate has no schema for.
OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
RELEASE, NAMESPACE = "mammo", "screening"
PLUGINS = Path("/usr/share/orthanc/plugins")
#: What the Secrets would hold: characters that break naive YAML, JSON or URL quoting.
FAKE_SECRETS = {
    ("mammo-node-credentials", "orthanc-password"): "orthanc: #pw {x}",
    ("mammo-node-credentials", "api-token"): "token-'-token: #{x}",
    ("mammo-node-postgresql", "password"): "p@ss/word:1",
    ("pacs-stow", "password"): "stow: 'pw' \"#1\" & {x}",
}


def _values_sets() -> list[Any]:
    return [pytest.param({}, id="default")] + [
        pytest.param(yaml.safe_load(path.read_text(encoding="utf-8")), id=path.stem)
        for path in EXAMPLES
    ]


VALUES_SETS = _values_sets()


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return loaded


def render(chart: helm_python.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """`helm template`: every manifest the chart renders, parsed."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        document
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def find(manifests: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"].endswith(suffix):
            return manifest
    raise AssertionError(f"no {kind} named *{suffix}")


def containers(
    manifests: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every Deployment and StatefulSet."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            pod = manifest["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield manifest["metadata"]["name"], pod, container


def kubernetes_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: secretKeyRef read, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = FAKE_SECRETS[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                item["value"],
            )
    return env


def node_settings(
    manifests: list[dict[str, Any]], deployment: str, tmp_path: Path
) -> tuple[Settings, dict[str, str]]:
    """What `mammo-node serve` in that Deployment's pod would run with."""
    config_map = find(manifests, "ConfigMap", "-config")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"], encoding="utf-8")
    (container,) = find(manifests, "Deployment", deployment)["spec"]["template"]["spec"][
        "containers"
    ]
    env = kubernetes_env(container)
    assert env.pop("MAMMO_NODE_CONFIG") == "/etc/mammo-node/config.yaml"
    return load_settings(config_file, environ=env), env


# -- helm lint and the values schema ---------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_SETS)
def test_helm_lint_strict_passes(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values=values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("path", [CHART / "values.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_values_files_match_the_schema(path: Path, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(
        yaml.safe_load(path.read_text(encoding="utf-8"))
    )


BAD_VALUES = {
    "negative workers": {"workers": {"replicas": -1}},
    "workers: -1": {"workers": -1},
    "a password in the node settings": {"config": {"http_password": "secret"}},
    "an API token in the node settings": {"config": {"api_token": "secret"}},
    "a database URL with its password": {"config": {"database_url": "postgresql://u:pw@db/x"}},
    "a destination password in values": {
        "destinations": [{"name": "pacs", "url": "https://pacs/dicom-web", "password": "pw"}]
    },
    "a PostgreSQL password in values": {"postgresql": {"password": "pw"}},
    "no Secret name": {"existingSecret": ""},
    "a DIMSE destination without its AE title": {
        "destinations": [{"name": "p", "kind": "dimse", "host": "10.0.0.1"}]
    },
    "an AE title too long": {"config": {"aet": "MAMMONODE_TOO_LONG"}},
    "a writable root filesystem": {"securityContext": {"readOnlyRootFilesystem": False}},
}


@pytest.mark.parametrize("bad", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused(
    bad: dict[str, Any], chart: helm_python.Chart, schema: dict[str, Any]
) -> None:
    merged = chart.merge_values(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(merged)
    with pytest.raises(helm_python.HelmValuesError):  # helm install/template refuse them too
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


# -- every manifest against the Kubernetes API schemas ---------------------------------------


VALIDATIONS = [
    pytest.param(values.values[0], version, id=f"{values.id}-{version}")
    for values in VALUES_SETS
    for version in (
        KUBERNETES_VERSIONS
        if values.id == "default"
        else (KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1])
    )
]


@pytest.mark.parametrize(("values", "version"), VALIDATIONS)
def test_manifests_are_valid_kubernetes(
    values: dict[str, Any], version: str, chart: helm_python.Chart
) -> None:
    manifests = render(chart, values)
    kinds = set()
    for manifest in manifests:
        kinds.add(manifest["kind"])
        if (manifest["apiVersion"], manifest["kind"]) in OPERATOR_KINDS:
            continue  # no schema offline; the rules are checked by promtool below
        kubernetes_validate.validate(manifest, version, strict=True)
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    assert "Secret" not in kinds  # credentials come from existing Secrets only


def test_everything_is_rendered_by_the_large_site(chart: helm_python.Chart) -> None:
    large = yaml.safe_load((CHART / "examples" / "large-site.yaml").read_text(encoding="utf-8"))
    kinds = {(m["kind"], m["metadata"]["name"]) for m in render(chart, large)}
    prefix = f"{RELEASE}-mammo-node"
    assert kinds >= {
        ("StatefulSet", f"{prefix}-orthanc"),
        ("Deployment", f"{prefix}-api"),
        ("Deployment", f"{prefix}-workers"),
        ("HorizontalPodAutoscaler", f"{prefix}-workers"),
        ("Service", f"{prefix}-dicom"),
        ("Service", f"{prefix}-orthanc"),
        ("Service", f"{prefix}-api"),
        ("PersistentVolumeClaim", f"{prefix}-data"),
        ("ServiceMonitor", prefix),
        ("PrometheusRule", prefix),
        ("ConfigMap", f"{prefix}-dashboard"),
    }


# -- what the pods run -------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_SETS)
def test_pods_run_as_non_root_on_a_read_only_root(
    values: dict[str, Any], chart: helm_python.Chart
) -> None:
    for name, pod, container in containers(render(chart, values)):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name  # the image's user
        assert pod["automountServiceAccountToken"] is False, name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"][
            "drop"
        ] == ["ALL"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, name  # the only writable places: declared volumes
        for item in container.get("env", []):
            if "password" in item["name"].lower() or "token" in item["name"].lower():
                assert "valueFrom" in item, f"{name}: {item['name']} must come from a Secret"


@pytest.mark.parametrize("values", VALUES_SETS)
def test_the_node_accepts_the_rendered_settings(
    values: dict[str, Any], chart: helm_python.Chart, tmp_path: Path
) -> None:
    manifests = render(chart, values)
    merged = chart.merge_values(values)
    api, api_env = node_settings(manifests, "-api", tmp_path)
    workers, _ = node_settings(manifests, "-workers", tmp_path)
    assert api.workers == 0 and workers.workers == merged["workers"]["threadsPerPod"]
    for settings in (api, workers):
        assert (
            settings.http_password == FAKE_SECRETS[("mammo-node-credentials", "orthanc-password")]
        )
        assert settings.api_token == FAKE_SECRETS[("mammo-node-credentials", "api-token")]
        assert settings.api_host == "0.0.0.0" and settings.api_port == 8000
        assert settings.orthanc_base_url == f"http://{RELEASE}-mammo-node-orthanc:8042"
        # No password in the URL: libpq reads PGPASSWORD, set from the Secret.
        url = settings.effective_database_url
        assert url.startswith("postgresql+psycopg://") and "p@ss" not in url
        assert settings.aet == merged["config"]["aet"]
        assert [d.name for d in settings.destinations] == [
            d["name"] for d in merged["destinations"]
        ]
    assert api_env["PGPASSWORD"] == FAKE_SECRETS[("mammo-node-postgresql", "password")]
    for configured, destination in zip(merged["destinations"], workers.destinations, strict=True):
        secret = configured.get("passwordSecret")
        expected = FAKE_SECRETS[(secret["name"], secret["key"])] if secret else None
        assert destination.password == expected


@pytest.mark.parametrize("values", VALUES_SETS)
def test_orthanc_is_configured_like_the_embedded_one_on_postgresql(
    values: dict[str, Any], chart: helm_python.Chart
) -> None:
    manifests = render(chart, values)
    merged = chart.merge_values(values)
    text = find(manifests, "ConfigMap", "-config")["data"]["orthanc.json"]
    # Orthanc substitutes ${VAR} from its environment; the rest is plain JSON.
    assert set(re.findall(r"\$\{(\w+)\}", text)) == {
        "MAMMO_NODE_HTTP_PASSWORD",
        "MAMMO_NODE_API_TOKEN",
        "PGPASSWORD",
    }
    config = json.loads(text)
    statefulset = find(manifests, "StatefulSet", "-orthanc")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in container["env"]} >= {
        "MAMMO_NODE_HTTP_PASSWORD",
        "MAMMO_NODE_API_TOKEN",
        "PGPASSWORD",
    }
    postgresql = config["PostgreSQL"]
    assert postgresql["EnableIndex"] and postgresql["EnableStorage"]
    assert postgresql["Database"] == merged["postgresql"]["orthancDatabase"]
    assert postgresql["Lock"] is (statefulset["spec"]["replicas"] == 1)  # several Orthancs: no lock
    plugins = {Path(p).name for p in config["Plugins"]}
    assert plugins == {
        "libOrthancDicomWeb.so",
        "libOrthancPython.so",
        "libOrthancPostgreSQLIndex.so",
        "libOrthancPostgreSQLStorage.so",
    }
    # The plugin as the image lays the repository out, and the node's own-output guard.
    assert config["PythonScript"] == "/opt/mammo-node/orthanc/mammo_node_plugin.py"
    assert (REPO / "orthanc" / "mammo_node_plugin.py").is_file()
    assert config["MammoNode"]["OwnManufacturer"] == NODE_MANUFACTURER
    assert config["MammoNode"]["NodeUrl"] == f"http://{RELEASE}-mammo-node-api:8000"
    assert config["DicomAet"] == merged["config"]["aet"]
    assert sorted(config["DicomModalities"]) == sorted(
        m["aet"] for m in merged["config"]["modalities"]
    )
    assert config["DicomAlwaysAllowStore"] is False and config["AuthenticationEnabled"] is True


def test_workers_scale_and_take_gpus_from_values(chart: helm_python.Chart) -> None:
    values = {"workers": {"replicas": 3, "gpu": {"enabled": True, "count": 2}}}
    manifests = render(chart, values)
    workers = find(manifests, "Deployment", "-workers")
    assert workers["spec"]["replicas"] == 3
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    # a GPU worker insists on its GPU (start-up fails without one); the API pod needs none
    assert {"name": "MAMMO_NODE_DEVICE", "value": "cuda"} in container["env"]
    (api,) = find(manifests, "Deployment", "-api")["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in api["resources"].get("limits", {})
    assert "MAMMO_NODE_DEVICE" not in {e["name"] for e in api["env"]}
    assert not [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]

    autoscaled = render(
        chart, {"workers": {"replicas": 1, "autoscaling": {"enabled": True, "maxReplicas": 6}}}
    )
    assert "replicas" not in find(autoscaled, "Deployment", "-workers")["spec"]  # the HPA owns it
    hpa = find(autoscaled, "HorizontalPodAutoscaler", "-workers")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "mammo_node_queue_depth"
    assert hpa["spec"]["maxReplicas"] == 6


def test_network_policy_lets_modalities_reach_dicom_only_and_workers_reach_pacs_only(
    chart: helm_python.Chart,
) -> None:
    large = yaml.safe_load((CHART / "examples" / "large-site.yaml").read_text(encoding="utf-8"))
    manifests = render(chart, large)
    orthanc = find(manifests, "NetworkPolicy", "-orthanc")["spec"]
    dicom_rules = [
        r for r in orthanc["ingress"] if r["ports"] == [{"port": 4242, "protocol": "TCP"}]
    ]
    (dicom,) = dicom_rules
    sources = {peer["ipBlock"]["cidr"] for peer in dicom["from"]}
    assert sources == {f"{m['host']}/32" for m in large["config"]["modalities"]} | set(
        large["networkPolicy"]["modalityCIDRs"]
    )
    for rule in orthanc["ingress"]:
        if rule is not dicom:  # HTTP: only from the node's own pods, never from modalities
            assert all("ipBlock" not in peer for peer in rule["from"])
    workers = find(manifests, "NetworkPolicy", "-workers")["spec"]
    outside = {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in workers["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule["ports"]
    }
    assert outside == {("10.40.0.60/32", 443), ("10.40.0.50/32", 2762), ("10.40.0.70/32", 5432)}
    for rule in workers["egress"]:
        if "to" not in rule:  # unrestricted destinations: DNS only
            assert {p["port"] for p in rule["ports"]} == {53}


def test_no_modality_means_no_dicom_ingress(chart: helm_python.Chart) -> None:
    manifests = render(chart, {"config": {"modalities": []}})
    ingress = find(manifests, "NetworkPolicy", "-orthanc")["spec"]["ingress"]
    assert all(rule["ports"][0]["port"] != 4242 for rule in ingress)  # not "from anywhere"


def test_dashboard_config_map_is_the_monitoring_dashboard(chart: helm_python.Chart) -> None:
    dashboard = find(render(chart, {}), "ConfigMap", "-dashboard")
    shipped = json.loads(
        (REPO / "monitoring" / "grafana-dashboard.json").read_text(encoding="utf-8")
    )
    assert json.loads(dashboard["data"]["mammo-node.json"]) == shipped
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


# -- alerts --------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Sample names the node's /metrics serves (node/observability/metrics.py)."""
    metrics = NodeMetrics(dict)
    metrics.watch_deliveries(dict)
    names = {"up"}
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum"))
    return names


@pytest.fixture(scope="module")
def rules(chart: helm_python.Chart) -> dict[str, Any]:
    large = yaml.safe_load((CHART / "examples" / "large-site.yaml").read_text(encoding="utf-8"))
    rule = find(render(chart, large), "PrometheusRule", "mammo-node")
    spec: dict[str, Any] = rule["spec"]
    return spec


def test_alerts_cover_dead_letters_queue_failures_and_heartbeat(rules: dict[str, Any]) -> None:
    alerts = {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}
    assert set(alerts) >= {
        "MammoNodeDeadLetters",
        "MammoNodeQueueGrowing",
        "MammoNodeJobsFailing",
        "MammoNodeNoHeartbeat",
    }
    known = exported_metric_names()
    for alert, expr in alerts.items():
        used = set(re.findall(r"\b(mammo_node_\w+|up)\s*\{", expr))
        assert used and used <= known, (
            f"{alert} uses metrics the node does not export: {used - known}"
        )


promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing (Debian package prometheus; make test installs it)",
)


@promtool
def test_promtool_checks_the_rules(rules: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


@promtool
def test_promtool_fires_the_alerts_on_their_series(rules: dict[str, Any], tmp_path: Path) -> None:
    # The expressions are under test here; the annotations' templates are checked above.
    bare = {
        "groups": [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in rules["groups"]
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(bare), encoding="utf-8")
    api = f'namespace="{NAMESPACE}", service="{RELEASE}-mammo-node-api", pod="api-0"'
    worker = f'namespace="{NAMESPACE}", service="{RELEASE}-mammo-node-workers", pod="workers-0"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'mammo_node_deliveries{{{api}, destination="central-pacs", state="dead_letter"}}',
                        "values": "0 0 1x20",
                    },
                    {"series": f"up{{{api}}}", "values": "1x25"},
                    {"series": f"up{{{worker}}}", "values": "1 1 0x20"},
                    {"series": f"mammo_node_queue_depth{{{api}}}", "values": "0+2x60"},
                    {
                        "series": f'mammo_node_job_failures_total{{{worker}, reason="PeerUnavailable", final="true"}}',
                        "values": "0 0 1 1",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "MammoNodeDeadLetters",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "namespace": NAMESPACE,
                                    "destination": "central-pacs",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "MammoNodeNoHeartbeat",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "namespace": NAMESPACE,
                                    "service": f"{RELEASE}-mammo-node-workers",
                                    "pod": "workers-0",
                                }
                            }
                        ],
                    },
                    {"eval_time": "10m", "alertname": "MammoNodeAbsent", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "MammoNodeJobsFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": NAMESPACE,
                                    "reason": "PeerUnavailable",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": "60m",
                        "alertname": "MammoNodeQueueGrowing",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "namespace": NAMESPACE}}
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- Orthanc on PostgreSQL with the chart's own configuration ----------------------------------


@needs_orthanc
@pytest.mark.slow
def test_orthanc_stores_dicom_in_postgresql_with_the_charts_config(
    chart: helm_python.Chart, tmp_path: Path
) -> None:
    """The rendered orthanc.json, run by the Debian Orthanc: its plugins load, ${VAR} come
    from the environment, and an instance lands in PostgreSQL (index and storage)."""
    if not all(
        (PLUGINS / name).exists()
        for name in ("libOrthancPostgreSQLIndex.so", "libOrthancPostgreSQLStorage.so")
    ):
        pytest.skip("orthanc-postgresql is not installed (make test installs it)")
    with postgres_server() as url:
        server = sqlalchemy.make_url(url)
        engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("CREATE DATABASE orthanc"))
        values = {"postgresql": {"host": server.host, "port": server.port, "sslmode": "disable"}}
        text = find(render(chart, values), "ConfigMap", "-config")["data"]["orthanc.json"]
        config = json.loads(text)
        # Only what differs on this machine: free ports, scratch in tmp, the plugin's checkout path.
        http_port, dicom_port = free_port(), free_port()
        config.update(
            HttpPort=http_port,
            DicomPort=dicom_port,
            StorageDirectory=str(tmp_path / "scratch"),
            IndexDirectory=str(tmp_path / "scratch"),
            TemporaryDirectory=str(tmp_path),
            PythonScript=str(REPO / "orthanc" / "mammo_node_plugin.py"),
        )
        assert config["PostgreSQL"]["Password"] == "${PGPASSWORD}"
        path = tmp_path / "orthanc.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        secrets = {
            "MAMMO_NODE_HTTP_PASSWORD": FAKE_SECRETS[
                ("mammo-node-credentials", "orthanc-password")
            ],
            "MAMMO_NODE_API_TOKEN": FAKE_SECRETS[("mammo-node-credentials", "api-token")],
            "PGPASSWORD": FAKE_SECRETS[("mammo-node-postgresql", "password")],
        }
        log = open(tmp_path / "orthanc.log", "wb")  # closed in finally
        process = subprocess.Popen(
            ["Orthanc", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **secrets},
        )
        try:
            auth = ("mammo", secrets["MAMMO_NODE_HTTP_PASSWORD"])
            base = f"http://127.0.0.1:{http_port}"

            def system() -> bool:
                if process.poll() is not None:
                    raise AssertionError(
                        (tmp_path / "orthanc.log").read_text(errors="replace")[-3000:]
                    )
                try:
                    return httpx.get(f"{base}/system", auth=auth, timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for("Orthanc on PostgreSQL", system, timeout=60)
            dataset, _truth = next(iter(synthetic_exam(seed=7, lesions_per_image=1)))
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            stored = httpx.post(
                f"{base}/instances", content=buffer.getvalue(), auth=auth, timeout=30
            )
            assert stored.status_code == 200, stored.text
            assert (
                httpx.get(f"{base}/system", auth=("mammo", "wrong"), timeout=5).status_code == 401
            )
            plugins = httpx.get(f"{base}/plugins", auth=auth, timeout=5).json()
            assert {"dicom-web", "python", "postgresql-index", "postgresql-storage"} <= set(plugins)
        finally:
            process.terminate()
            process.wait(30)
            log.close()
        orthanc_db = sqlalchemy.create_engine(server.set(database="orthanc"))
        with orthanc_db.connect() as connection:
            files = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM storagearea")
            ).scalar_one()
            instances = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM resources WHERE resourcetype = 3")
            ).scalar_one()
        orthanc_db.dispose()
        engine.dispose()
    assert files >= 1 and instances == 1  # the DICOM file itself is in PostgreSQL
