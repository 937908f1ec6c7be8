"""The part of kustomize that deploy/kubernetes uses, so the tests can render it without the tool.

No kustomize is installable with pip, so this renders a kustomization the way `kubectl kustomize`
does for the fields it knows: `resources` (files and directories), `components`, `patches` that
are JSON patches (RFC 6902) of one target, and `images`. Any other field is refused rather than
ignored, so the files cannot start using a feature that this renderer would silently skip. Where
kubectl is installed, tests/deploy/test_kubernetes.py checks that both give the same objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
COMPONENT = ("kustomize.config.k8s.io/v1alpha1", "Component")
FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "images"}


class KustomizeError(Exception):
    pass


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` prints (not necessarily in its order)."""
    return _build(directory, KUSTOMIZATION, [])


def _kustomization(directory: Path, kind: tuple[str, str]) -> dict[str, Any]:
    (document,) = load_documents(directory / "kustomization.yaml")
    if (document.get("apiVersion"), document.get("kind")) != kind:
        raise KustomizeError(f"{directory}: expected {kind}")
    unknown = set(document) - FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: fields this renderer does not know: {unknown}")
    return document


def _build(directory: Path, kind: tuple[str, str], objects: list[dict]) -> list[dict]:
    document = _kustomization(directory, kind)
    for entry in document.get("resources", []):
        path = directory / entry
        objects.extend(render(path) if path.is_dir() else load_documents(path))
    # As kustomize does: a component's resources join, then its transformations apply to all.
    for entry in document.get("components", []):
        objects = _build(directory / entry, COMPONENT, objects)
    for patch in document.get("patches", []):
        _apply_patch(directory, patch, objects)
    for image in document.get("images", []):
        _set_image(image, objects)
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    if len(set(keys)) != len(keys):
        raise KustomizeError(f"{directory}: an object is defined twice: {keys}")
    return objects


def _apply_patch(directory: Path, patch: dict[str, Any], objects: list[dict]) -> None:
    if set(patch) != {"path", "target"} or set(patch["target"]) != {"kind", "name"}:
        raise KustomizeError(f"only path + target (kind, name) patches are rendered: {patch}")
    operations = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError(f"{patch['path']}: not a JSON patch (a list of operations)")
    target = (patch["target"]["kind"], patch["target"]["name"])
    indices = [
        i for i, obj in enumerate(objects) if (obj["kind"], obj["metadata"]["name"]) == target
    ]
    if not indices:
        raise KustomizeError(f"{patch['path']}: no {target} to patch")
    for index in indices:
        objects[index] = json_patch(objects[index], operations)


def json_patch(document: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902's add, remove, replace and test (what the patches here use)."""
    document = copy.deepcopy(document)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        parts = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]
        *parents, last = parts
        container = document
        for part in parents:
            container = container[_key(container, part)]
        if op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(container, list):
                container.insert(len(container) if last == "-" else int(last), value)
            else:
                container[last] = value
            continue
        key = _key(container, last)
        current = container[key]  # the item must exist: KeyError or IndexError otherwise
        if op == "test":
            if current != operation["value"]:
                raise KustomizeError(f"test failed: {path} is {current!r}")
        elif op == "remove":
            del container[key]
        elif op == "replace":
            container[key] = copy.deepcopy(operation["value"])
        else:
            raise KustomizeError(f"operation {op!r} is not rendered")
    return document


def _key(container: Any, part: str) -> Any:
    return int(part) if isinstance(container, list) else part


def _set_image(image: dict[str, str], objects: list[dict]) -> None:
    if not set(image) <= {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"image fields this renderer does not know: {image}")
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag = container["image"], ""
            if "@" in name:
                continue
            if ":" in name.rsplit("/", 1)[-1]:  # a tag, not a registry's port
                name, _, tag = name.rpartition(":")
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            else:
                tag = image.get("newTag", tag)
                container["image"] = f"{name}:{tag}" if tag else name
