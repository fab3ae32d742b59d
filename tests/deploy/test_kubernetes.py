"""The Kubernetes manifests: schema-valid, secure by default, and consistent with each other.

Every kustomization under deploy/kubernetes is rendered (tests/deploy/kustomize_lite.py)
and validated offline against the Kubernetes OpenAPI schemas of the versions the README
promises; CRD objects (cert-manager, Prometheus Operator) get structural checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .kustomize_lite import Resource, render
from .manifests import (
    DEPLOY,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    all_containers,
    config_map_data,
    container,
    find,
    kustomization_id,
    mqttgate_config,
    one,
    pod_spec,
    projected_files,
    secret_data,
)

CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
BASE = KUBERNETES / "base"
EXAMPLE = KUBERNETES / "overlays" / "example"
PRODUCTION = KUBERNETES / "overlays" / "production"
STANDALONE = KUBERNETES / "standalone"


def test_the_expected_kustomizations_exist() -> None:
    assert {kustomization_id(p) for p in KUSTOMIZATIONS} >= {
        "base",
        "overlays/example",
        "overlays/production",
        "standalone",
    }


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=kustomization_id)
def resources(request: pytest.FixtureRequest) -> list[Resource]:
    return render(request.param)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_against_the_kubernetes_schema(
    resources: list[Resource], version: str
) -> None:
    checked = 0
    for resource in resources:
        if resource["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = resource["metadata"]["name"]
            pytest.fail(f"{resource['kind']}/{name} invalid for {version}: {error.message}")
        checked += 1
    assert checked >= 5


def test_schema_validation_catches_a_broken_field() -> None:
    """Guards the test above: a misspelt field must not validate in strict mode."""
    deployment = one(render(BASE), "Deployment", "mqttgate")
    pod_spec(deployment)["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _structural(resource: Resource, required: dict[str, type]) -> None:
    for dotted, expected_type in required.items():
        value: Any = resource
        for part in dotted.split("."):
            assert isinstance(value, dict) and part in value, f"{resource['kind']}: {dotted}"
            value = value[part]
        assert isinstance(value, expected_type), f"{resource['kind']}: {dotted} type"


def test_crd_objects_are_structurally_sound() -> None:
    resources = render(PRODUCTION)
    kinds = {r["kind"] for r in resources if r["apiVersion"].startswith(CRD_GROUPS)}
    assert kinds == {"Certificate", "ServiceMonitor", "PrometheusRule"}
    deployment = one(resources, "Deployment", "mqttgate")

    certificate = one(resources, "Certificate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    _structural(
        certificate,
        {
            "metadata.name": str,
            "spec.secretName": str,
            "spec.issuerRef.name": str,
            "spec.issuerRef.kind": str,
            "spec.dnsNames": list,
        },
    )
    # The Secret cert-manager writes is the one the pod projects.
    secrets = {
        name
        for _, (kind, name, _) in projected_files(deployment, "mqttgate").items()
        if kind == "Secret"
    }
    assert certificate["spec"]["secretName"] in secrets
    assert certificate["spec"]["issuerRef"]["kind"] in {"Issuer", "ClusterIssuer"}
    assert "mqttgate.mqtt.svc" in certificate["spec"]["dnsNames"]
    assert "server auth" in certificate["spec"].get("usages", ["server auth"])

    monitor = one(resources, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    _structural(monitor, {"spec.selector.matchLabels": dict, "spec.endpoints": list})
    selected = [
        s
        for s in find(resources, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["mqttgate-metrics"]
    port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names

    rule = one(resources, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    _structural(rule, {"spec.groups": list})
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"], "PrometheusRule drifted from alerts.yaml"


def test_every_pod_and_container_is_locked_down(resources: list[Resource]) -> None:
    workloads = find(resources, "Deployment")
    assert workloads
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in all_containers(workload):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["runAsUser"] == 10001, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
            assert "memory" in c["resources"]["limits"], c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
            image = c["image"]
            tag = image.rpartition(":")[2]
            assert ":" in image and "/" not in tag and tag != "latest", image
            # subPath mounts never see ConfigMap/Secret updates: rotation would need restarts.
            assert all("subPath" not in m for m in c.get("volumeMounts", [])), c["name"]


def _mqttgate_workload(resources: list[Resource]) -> Resource:
    return one(resources, "Deployment", "mqttgate")


def test_mqttgate_probes_use_the_documented_endpoints(resources: list[Resource]) -> None:
    workload = _mqttgate_workload(resources)
    gate = container(workload, "mqttgate")
    ports = {p["name"]: p["containerPort"] for p in gate["ports"]}
    assert ports == {"mqtts": 8883, "metrics": 9100}
    assert gate["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gate["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # /readyz needs the broker; the sidecar's startupProbe gates the broker's start.
    assert gate["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ports[gate[probe]["httpGet"]["port"]] == 9100
    assert gate["args"][:1] == ["serve"]
    tmp = [m for m in gate["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == tmp[0]["name"]]
    assert "emptyDir" in volume


@pytest.mark.parametrize("directory", [BASE, PRODUCTION, EXAMPLE], ids=kustomization_id)
def test_sidecar_pattern(directory: Path) -> None:
    resources = render(directory)
    workload = _mqttgate_workload(resources)
    pod = pod_spec(workload)
    (gate,) = pod["initContainers"]
    assert gate["name"] == "mqttgate" and gate["restartPolicy"] == "Always"
    (broker,) = pod["containers"]
    assert re.fullmatch(r"eclipse-mosquitto:2\.\d+\.\d+", broker["image"]), broker["image"]
    assert "ports" not in broker, "the broker must not be reachable from outside the pod"
    conf = config_map_data(resources, "mosquitto-config")["mosquitto.conf"].splitlines()
    assert "allow_anonymous true" in conf
    listeners = [line.split() for line in conf if line.startswith("listener ")]
    assert listeners == [["listener", "1883", "127.0.0.1"]]
    assert mqttgate_config(resources)["upstream"]["address"] == "127.0.0.1:1883"
    # The mosquitto config is mounted where the container's args read it.
    broker_files = projected_files(workload, "mosquitto")
    assert not broker_files  # plain configMap volume without items: check the mount instead
    (mount,) = broker["volumeMounts"]
    assert broker["args"][-1] == f"{mount['mountPath']}/mosquitto.conf"


def test_standalone_points_at_the_broker_service() -> None:
    resources = render(STANDALONE)
    workload = _mqttgate_workload(resources)
    assert [c["name"] for c in pod_spec(workload)["containers"]] == ["mqttgate"]
    assert "initContainers" not in pod_spec(workload)
    assert mqttgate_config(resources)["upstream"]["address"] == "mosquitto.mqtt.svc:1883"
    guard = one(resources, "NetworkPolicy", "mosquitto-only-from-mqttgate")
    (rule,) = guard["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mqttgate"}}}
    ]


def test_config_paths_resolve_inside_the_projected_volume(resources: list[Resource]) -> None:
    """design.md: relative paths are relative to the config file's folder."""
    workload = _mqttgate_workload(resources)
    gate = container(workload, "mqttgate")
    files = projected_files(workload, "mqttgate")
    config_path = PurePosixPath("/etc/mqttgate/config.yaml")
    assert files[config_path][0] == "ConfigMap"
    env = {e["name"]: e["value"] for e in gate["env"]}
    assert env["MQTTGATE_CONFIG"] == str(config_path)
    assert gate["args"] == ["serve", "--config", str(config_path)]
    config = mqttgate_config(resources)
    named = [config["policy"]["file"]]
    for listener in config["listeners"]:
        tls = listener["tls"]
        named += [tls["cert_file"], tls["key_file"], tls["ca_file"]]
    for relative in named:
        assert not relative.startswith("/"), relative
        assert config_path.parent / relative in files, relative
    (listener,) = config["listeners"]
    assert listener["bind"] == "0.0.0.0:8883"
    assert config["metrics"]["bind"] == "0.0.0.0:9100"
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9100"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_network_policy_admits_only_mqtts_and_monitoring(resources: list[Resource]) -> None:
    workload = _mqttgate_workload(resources)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    policy = one(resources, "NetworkPolicy", "mqttgate")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "Ingress" in policy["spec"]["policyTypes"]
    rules = policy["spec"]["ingress"]
    by_port = {tuple(p["port"] for p in rule["ports"]): rule for rule in rules}
    assert set(by_port) == {(8883,), (9100,)}
    assert "from" not in by_port[(8883,)]
    assert by_port[(9100,)]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_services_and_budget_select_the_pods(resources: list[Resource]) -> None:
    workload = _mqttgate_workload(resources)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for c in all_containers(workload) for p in c.get("ports", [])}
    services = {s["metadata"]["name"]: s for s in find(resources, "Service")}
    assert set(services) == {"mqttgate", "mqttgate-metrics"}
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod_labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    assert [p["port"] for p in services["mqttgate"]["spec"]["ports"]] == [8883]
    assert [p["port"] for p in services["mqttgate-metrics"]["spec"]["ports"]] == [9100]
    budget = one(resources, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert workload["spec"]["replicas"] >= 2
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_production_overlay_applies_its_changes() -> None:
    resources = render(PRODUCTION)
    assert {r["metadata"].get("namespace") for r in resources} == {"mqtt"}
    assert one(resources, "Service", "mqttgate")["spec"]["type"] == "LoadBalancer"
    workload = _mqttgate_workload(resources)
    assert workload["spec"]["replicas"] == 3
    assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == (
        "mqttgate"
    )
    # includeSelectors: false keeps the immutable Deployment selector unchanged.
    assert workload["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "mqttgate"}
    # No example Secret sneaks into production.
    assert not find(resources, "Secret")


def test_example_secrets_are_marked_and_usable() -> None:
    resources = render(EXAMPLE)
    for secret in find(resources, "Secret"):
        assert "EXAMPLE" in secret["metadata"]["annotations"]["mqttgate.example/warning"]
    users = yaml.safe_load(secret_data(resources, "mqttgate-users")["users.yaml"])
    from argon2 import PasswordHasher

    demo = users["users"]["demo"]
    assert demo["grant_type"] == "password"
    assert PasswordHasher().verify(demo["password"], "change-me")
    tls = secret_data(resources, "mqttgate-tls")
    assert set(tls) == {"tls.crt", "tls.key", "ca.crt"}
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(tls["tls.crt"])
    ca = x509.load_pem_x509_certificate(tls["ca.crt"])
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=kustomization_id)
def test_kustomize_lite_renders_like_kubectl(directory: Path) -> None:
    """Keeps the tiny renderer honest wherever the real kustomize is at hand."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, check=True, timeout=60
    ).stdout
    real = {(r["kind"], r["metadata"]["name"]): r for r in yaml.safe_load_all(output) if r}
    lite = {(r["kind"], r["metadata"]["name"]): r for r in render(directory)}
    assert set(real) == set(lite)
    for key, resource in real.items():
        assert lite[key] == resource, key


def test_readme_matches_the_manifests() -> None:
    """The README names the broker image, Kubernetes versions and example password."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    broker = container(one(render(BASE), "Deployment", "mqttgate"), "mosquitto")
    assert f"`{broker['image']}`" in readme
    assert "Kubernetes >= 1.29" in readme
    for version in KUBERNETES_VERSIONS:
        assert version.rsplit(".", 1)[0] in readme
    assert "`change-me`" in readme
    for directory in KUSTOMIZATIONS:
        assert f"kubernetes/{kustomization_id(directory)}" in readme
