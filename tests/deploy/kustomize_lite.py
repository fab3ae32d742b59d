"""A tiny kustomize, enough for deploy/kubernetes, so the tests need no kustomize binary.

It handles exactly what the manifests use: ``resources`` (files and kustomization
directories), ``namespace``, ``commonLabels``, ``labels`` (``pairs``, ``includeSelectors``,
``includeTemplates``), ``images`` (``newName``/``newTag``) and ``patches`` given by ``path``
holding a strategic-merge patch (maps merge, lists of maps merge by ``name``, other lists
are replaced, ``$patch: delete`` removes a resource). Anything else raises, so a manifest
that outgrows this renderer fails loudly instead of being rendered wrongly. Where
``kubectl kustomize`` exists, a test compares the two.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

_KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "commonLabels",
    "labels",
    "images",
    "patches",
}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterIssuer"}
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeLiteError(ValueError):
    """The kustomization uses something this renderer does not implement."""


def load_documents(path: Path) -> list[Resource]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def render(directory: Path) -> list[Resource]:
    """Render the kustomization in ``directory`` into a list of resources."""
    directory = Path(directory)
    kustomization_file = directory / "kustomization.yaml"
    (kustomization,) = load_documents(kustomization_file)
    unknown = set(kustomization) - _KNOWN_KEYS
    if unknown:
        raise KustomizeLiteError(f"{kustomization_file}: unsupported keys {sorted(unknown)}")

    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render(target))
        else:
            resources.extend(load_documents(target))
    _check_unique(resources, kustomization_file)

    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeLiteError(f"{kustomization_file}: only `patches: - path:` is supported")
        for patch in load_documents(directory / patch_entry["path"]):
            resources = _apply_patch(resources, patch, kustomization_file)

    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in _CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]

    if "commonLabels" in kustomization:
        _add_labels(resources, kustomization["commonLabels"], selectors=True, templates=True)
    for label_entry in kustomization.get("labels", []):
        extra = set(label_entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if extra:
            raise KustomizeLiteError(f"{kustomization_file}: unsupported labels keys {extra}")
        selectors = bool(label_entry.get("includeSelectors", False))
        templates = bool(label_entry.get("includeTemplates", False)) or selectors
        _add_labels(resources, label_entry["pairs"], selectors=selectors, templates=templates)

    for image in kustomization.get("images", []):
        _set_image(resources, image)
    return resources


def _key(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def _check_unique(resources: list[Resource], origin: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        key = _key(resource)
        if key in seen:
            raise KustomizeLiteError(f"{origin}: {key} defined twice")
        seen.add(key)


def _apply_patch(resources: list[Resource], patch: Resource, origin: Path) -> list[Resource]:
    key = _key(patch)
    matches = [i for i, r in enumerate(resources) if _key(r) == key]
    if len(matches) != 1:
        raise KustomizeLiteError(f"{origin}: patch target {key} matches {len(matches)} resources")
    (index,) = matches
    if patch.get("$patch") == "delete":
        return resources[:index] + resources[index + 1 :]
    patched = strategic_merge(resources[index], patch)
    return [*resources[:index], patched, *resources[index + 1 :]]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Merge ``patch`` into a copy of ``base`` the way kubectl does for simple fields."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = strategic_merge(merged[name], value)
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        merged_list = copy.deepcopy(base)
        for item in patch:
            names = [entry["name"] for entry in merged_list]
            if item.get("$patch") == "delete":
                merged_list = [entry for entry in merged_list if entry["name"] != item["name"]]
            elif item["name"] in names:
                position = names.index(item["name"])
                merged_list[position] = strategic_merge(merged_list[position], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _add_labels(
    resources: list[Resource], pairs: dict[str, str], *, selectors: bool, templates: bool
) -> None:
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        spec = resource.get("spec", {})
        kind = resource["kind"]
        if templates and kind in _WORKLOADS:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if not selectors:
            continue
        if kind == "Service":
            spec.setdefault("selector", {}).update(pairs)
        elif kind in _WORKLOADS or kind == "PodDisruptionBudget":
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        elif kind == "NetworkPolicy":
            spec.setdefault("podSelector", {}).setdefault("matchLabels", {}).update(pairs)


def _set_image(resources: list[Resource], image: dict[str, str]) -> None:
    for resource in resources:
        if resource["kind"] not in _WORKLOADS:
            continue
        pod = resource["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            name, _, tag = container["image"].rpartition(":")
            if not name or "/" in tag:
                name, tag = container["image"], ""
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            new_tag = image.get("newTag", tag)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
