"""Reading the rendered manifests: which pod runs what, and what its files look like.

``lay_out_pod_files`` writes the files a container would see under its mounts into a
temporary directory, from the rendered ConfigMaps and Secrets themselves, so a test runs
mqttgate on exactly the config the pod would get, not on a copy of it.
"""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .kustomize_lite import Resource, render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATIONS = sorted(p.parent for p in KUBERNETES.rglob("kustomization.yaml"))
# What the manifests promise (deploy/README.md): native sidecars are on by default from 1.29.
KUBERNETES_VERSIONS = ("1.29.0", "1.30.0")


def kustomization_id(path: Path) -> str:
    return str(path.relative_to(KUBERNETES))


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]


def one(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def all_containers(workload: Resource) -> list[dict[str, Any]]:
    pod = pod_spec(workload)
    containers: list[dict[str, Any]] = pod.get("initContainers", []) + pod["containers"]
    return containers


def container(workload: Resource, name: str) -> dict[str, Any]:
    (found,) = [c for c in all_containers(workload) if c["name"] == name]
    return found


def config_map_data(resources: list[Resource], name: str) -> dict[str, str]:
    data: dict[str, str] = one(resources, "ConfigMap", name).get("data", {})
    return data


def secret_data(resources: list[Resource], name: str) -> dict[str, bytes]:
    secret = one(resources, "Secret", name)
    values = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
    values.update({k: v.encode() for k, v in secret.get("stringData", {}).items()})
    return values


def mqttgate_config(resources: list[Resource]) -> dict[str, Any]:
    """The parsed config.yaml of the ConfigMap the mqttgate container mounts."""
    workload = one(resources, "Deployment", "mqttgate")
    volume = _volume_at(workload, container(workload, "mqttgate"), "/etc/mqttgate")
    for source in volume["projected"]["sources"]:
        if "configMap" in source:
            data = config_map_data(resources, source["configMap"]["name"])
            parsed: dict[str, Any] = yaml.safe_load(data["config.yaml"])
            return parsed
    raise AssertionError("no ConfigMap projected into /etc/mqttgate")


def projected_files(
    workload: Resource, container_name: str
) -> dict[PurePosixPath, tuple[str, str, str]]:
    """Absolute path in the container -> (kind, object name, key) for every projected file."""
    files: dict[PurePosixPath, tuple[str, str, str]] = {}
    c = container(workload, container_name)
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        root = PurePosixPath(mount["mountPath"])
        sources: list[dict[str, Any]] = []
        if "projected" in volume:
            sources = volume["projected"]["sources"]
        elif "configMap" in volume:
            sources = [{"configMap": volume["configMap"]}]
        elif "secret" in volume:
            sources = [{"secret": {**volume["secret"], "name": volume["secret"]["secretName"]}}]
        for source in sources:
            for kind, key in (("configMap", "ConfigMap"), ("secret", "Secret")):
                if kind in source:
                    for item in source[kind].get("items", []):
                        files[root / item["path"]] = (key, source[kind]["name"], item["key"])
    return files


def lay_out_pod_files(
    resources: list[Resource], container_name: str, root: Path
) -> dict[PurePosixPath, Path]:
    """Write the container's ConfigMap/Secret files under ``root``; return where each went."""
    workload = one(resources, "Deployment", "mqttgate")
    placed: dict[PurePosixPath, Path] = {}
    for in_container, (kind, name, key) in projected_files(workload, container_name).items():
        if kind == "ConfigMap":
            content = config_map_data(resources, name)[key].encode()
        else:
            content = secret_data(resources, name)[key]
        target = root / in_container.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        placed[in_container] = target
    return placed


def _volume_at(workload: Resource, c: dict[str, Any], mount_path: str) -> dict[str, Any]:
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return volume


def rendered(directory: Path) -> list[Resource]:
    return render(directory)
