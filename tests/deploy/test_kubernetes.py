"""deploy/kubernetes, checked against Kubernetes' own schemas and against the code it runs.

There is no cluster and no kustomize here: tests/deploy/kustomize.py renders each overlay, every
rendered object is validated strictly (no unknown field) with kubernetes-validate, and where
kubectl is installed its built-in kustomize must render the same objects.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.app import create_app
from service.server import DRAIN_S
from service.settings import ServiceSettings
from service.workers import STOP_MARGIN_S
from tests.deploy.kustomize import KustomizeError, json_patch, load_documents, render
from tests.deploy.test_deploy import ROOT, _dockerfile_instructions

KUBERNETES = ROOT / "deploy" / "kubernetes"
# The newest release kubernetes-validate has schemas for, and the oldest these files need: the
# preStop `sleep` action is on by default from 1.30.
KUBERNETES_VERSIONS = ["1.37", "1.30"]
# Kubernetes' quantity syntax, which the schemas leave to the API server ("2", "500m", "2Gi").
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
CHECKPOINT_COMPONENT = "components/checkpoint-volume"
# What a user builds: each overlay as it is, and each with the checkpoint volume added.
VARIANTS = {
    "gpu": ("overlays/gpu", []),
    "cpu": ("overlays/cpu", []),
    "gpu+checkpoint": ("overlays/gpu", [CHECKPOINT_COMPONENT]),
    "cpu+checkpoint": ("overlays/cpu", [CHECKPOINT_COMPONENT]),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of deploy/kubernetes with a kustomization for each variant, as a user writes one
    (kustomize takes relative paths only)."""
    root = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, root)
    for name, (overlay, components) in VARIANTS.items():
        folder = root / "variants" / name
        folder.mkdir(parents=True)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"../../{overlay}"],
        }
        if components:
            kustomization["components"] = [f"../../{c}" for c in components]
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return root


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, dict[tuple[str, str], dict]]:
    return {
        name: {(o["kind"], o["metadata"]["name"]): o for o in render(tree / "variants" / name)}
        for name in VARIANTS
    }


def _pod(objects: dict[tuple[str, str], dict]) -> dict:
    return objects[("Deployment", "vaegan")]["spec"]["template"]["spec"]


def _container(objects: dict[tuple[str, str], dict]) -> dict:
    (container,) = _pod(objects)["containers"]
    return container


def _environment(container: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in container["env"]}


def _graceful_shutdown_s() -> float:
    """The longest a SIGTERMed `vaegan-serve` takes: uvicorn's drain in each worker, plus what
    the supervisor of several workers waits beyond it before killing one."""
    return DRAIN_S + STOP_MARGIN_S


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(rendered, variant, version):
    objects = rendered[variant]
    assert set(objects) == {
        ("Deployment", "vaegan"),
        ("Service", "vaegan"),
        ("HorizontalPodAutoscaler", "vaegan"),
        ("PodDisruptionBudget", "vaegan"),
    }
    for obj in objects.values():
        validated = kubernetes_validate.validate(obj, version, strict=True)
        assert validated == version, (obj["kind"], validated)
    pod = _pod(objects)
    quantities = [
        *_container(objects)["resources"]["requests"].values(),
        *_container(objects)["resources"]["limits"].values(),
        *(v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v),
    ]
    assert all(QUANTITY.match(str(quantity)) for quantity in quantities), quantities


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kubectl_kustomize_renders_the_same_objects(tree, rendered, variant):
    result = subprocess.run(
        ["kubectl", "kustomize", str(tree / "variants" / variant)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    objects = {
        (o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o
    }
    assert objects == rendered[variant]


def test_every_file_is_part_of_a_kustomization():
    used = set()
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        used.add(kustomization)
        (document,) = load_documents(kustomization)
        for entry in document.get("resources", []) + document.get("components", []):
            path = (kustomization.parent / entry).resolve()
            assert path.exists(), f"{kustomization} names {entry}"
            used.add(path if path.is_file() else path / "kustomization.yaml")
        for patch in document.get("patches", []):
            used.add((kustomization.parent / patch["path"]).resolve())
    files = {p.resolve() for p in KUBERNETES.rglob("*") if p.is_file()}
    assert files == {p.resolve() for p in used}, files ^ used


def test_the_renderer_refuses_what_it_does_not_render(tmp_path):
    document = {"spec": {"items": [{"name": "a"}]}}
    with pytest.raises(KustomizeError, match="test failed"):
        json_patch(document, [{"op": "test", "path": "/spec/items/0/name", "value": "b"}])
    with pytest.raises(IndexError):
        json_patch(document, [{"op": "replace", "path": "/spec/items/1", "value": {}}])
    patched = json_patch(document, [{"op": "add", "path": "/spec/items/-", "value": {"n": 1}}])
    assert patched["spec"]["items"] == [{"name": "a"}, {"n": 1}] and len(document["spec"]["items"])
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: x-\n"
    )
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_kubernetes_files_agree_with_each_other_and_the_code(rendered, variant):
    objects = rendered[variant]
    instructions = _dockerfile_instructions()
    deployment = objects[("Deployment", "vaegan")]
    pod = _pod(objects)
    container = _container(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    # The image's CMD runs: no command or args, on the port the image exposes.
    assert "command" not in container and "args" not in container
    (exposed,) = [int(a) for k, a in instructions if k == "EXPOSE"]
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": exposed, "protocol": "TCP"}
    service = objects[("Service", "vaegan")]["spec"]
    (service_port,) = service["ports"]
    assert service_port["targetPort"] in (port["name"], exposed)

    # Every selector picks this Deployment's pods; the autoscaler and budget name it.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert service["selector"].items() <= labels.items()
    pdb = objects[("PodDisruptionBudget", "vaegan")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects[("HorizontalPodAutoscaler", "vaegan")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vaegan",
    }
    # The autoscaler owns the replica count; its CPU target needs a CPU request.
    assert "replicas" not in deployment["spec"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert container["resources"]["requests"]["cpu"]
    assert hpa["minReplicas"] > pdb["maxUnavailable"], "a drain leaves one pod serving"

    # The probes ask real routes of the app, on the container's port.
    routes = set(create_app(ServiceSettings(checkpoint="unused")).openapi()["paths"])
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    probes = {kind: container[kind]["httpGet"] for kind in kinds}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/health/ready",
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
    }
    assert {probe["path"] for probe in probes.values()} <= routes
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    # The startup probe waits at least as long as the image's own HEALTHCHECK start period.
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    start_period = int(re.search(r"--start-period=(\d+)s", healthcheck)[1])
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= start_period

    # Termination: the preStop pause and uvicorn's drain both end before SIGKILL.
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + _graceful_shutdown_s()

    # Every VAEGAN_* variable is a real setting, and the literal values are valid ones.
    settings = {f"VAEGAN_{name.upper()}" for name in ServiceSettings.model_fields}
    environment = _environment(container)
    assert set(environment) <= settings, set(environment) - settings
    literal = {
        n[len("VAEGAN_") :].lower(): v["value"] for n, v in environment.items() if "value" in v
    }
    ServiceSettings(**literal)
    # The API key comes from a Secret, never from the manifests.
    assert environment["VAEGAN_API_KEY"]["valueFrom"]["secretKeyRef"]["key"]
    # A Service named vaegan would otherwise set VAEGAN_PORT=tcp://... in the pods.
    assert pod["enableServiceLinks"] is False

    # The Dockerfile's user, and nothing it does not need.
    (user,) = [a for k, a in instructions if k == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    (useradd,) = [a for k, a in instructions if k == "RUN" and "useradd" in a]
    assert f"--uid {uid}" in useradd
    pod_security = pod["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (uid, gid)
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    # The root filesystem is read-only: /tmp (where uploads are spooled) is an emptyDir.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path, mount in mounts.items():
        assert path == "/tmp" or mount.get("readOnly") is True, path


def _image_variant(container: dict) -> str:
    """The Dockerfile variant the image tag names (vaegan:cuda, vaegan:cpu)."""
    name, _, tag = container["image"].rpartition(":")
    stages = {a.split(" AS ")[1] for k, a in _dockerfile_instructions() if k == "FROM"}
    assert name == "vaegan" and f"os-{tag}" in stages, container["image"]
    return tag


@pytest.mark.parametrize("variant", ["gpu", "gpu+checkpoint"])
def test_the_gpu_variant_takes_one_gpu(rendered, variant):
    objects = rendered[variant]
    container = _container(objects)
    assert _image_variant(container) == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _environment(container)["VAEGAN_DEVICE"]["value"] == "cuda"
    tolerations = {(t["key"], t["effect"]) for t in _pod(objects)["tolerations"]}
    assert tolerations == {("nvidia.com/gpu", "NoSchedule")}


@pytest.mark.parametrize("variant", ["cpu", "cpu+checkpoint"])
def test_the_cpu_variant_drops_the_gpu_and_sets_cpu_limits(rendered, variant):
    objects = rendered[variant]
    container = _container(objects)
    assert _image_variant(container) == "cpu"
    assert "nvidia.com" not in yaml.safe_dump(list(objects.values()))
    assert "tolerations" not in _pod(objects)
    resources = container["resources"]
    assert resources["limits"] == resources["requests"], "the Guaranteed class"
    assert set(resources["limits"]) == {"cpu", "memory"}
    environment = _environment(container)
    assert environment["VAEGAN_DEVICE"]["value"] == "cpu"
    # Workers and threads are sized by the pod's CPU, not the node's: VAEGAN_CPUS comes from
    # the container's own request (equal to its limit, which the cgroup quota enforces), and
    # no fixed thread count can contradict it.
    assert environment["VAEGAN_CPUS"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": container["name"],
        "resource": "requests.cpu",
        "divisor": "1",
    }
    assert float(resources["requests"]["cpu"]).is_integer()
    assert not {"VAEGAN_TORCH_THREADS", "VAEGAN_WORKERS"} & set(environment)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_checkpoint_is_the_bundled_one_or_read_only_from_a_volume(rendered, variant):
    pod = _pod(rendered[variant])
    environment = _environment(_container(rendered[variant]))
    if "checkpoint" not in variant:
        # Unset: the demo model bundled in the image.
        assert "VAEGAN_CHECKPOINT" not in environment
        return
    checkpoint = Path(environment["VAEGAN_CHECKPOINT"]["value"])
    (mount,) = [
        m
        for m in _container(rendered[variant])["volumeMounts"]
        if checkpoint.is_relative_to(m["mountPath"])
    ]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["readOnly"] is True


def test_the_readmes_kubectl_commands_name_real_kustomizations():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    paths = [path for block in blocks for path in re.findall(r"kubectl apply -k (\S+)", block)]
    assert {"deploy/kubernetes/overlays/gpu", "deploy/kubernetes/overlays/cpu"} <= set(paths)
    for path in paths:
        assert (ROOT / path / "kustomization.yaml").is_file(), path
