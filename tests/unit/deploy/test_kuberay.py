"""The KubeRay example (deploy/kuberay) is a RayCluster a user can apply as it is: parsed
here, with the properties the docs promise (one image everywhere, token auth, versions that
match the package and its [ray] extra)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "deploy" / "kuberay" / "raycluster.yaml"
DOCKERFILE = ROOT / "deploy" / "kuberay" / "Dockerfile"


def _manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def _pods(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    return [spec["headGroupSpec"]["template"]["spec"],
            *(group["template"]["spec"] for group in spec["workerGroupSpecs"])]


def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_it_is_a_raycluster_with_a_head_and_a_worker_group() -> None:
    manifest = _manifest()
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    spec = manifest["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["workerGroupSpecs"] and all(g["replicas"] >= 1
                                            for g in spec["workerGroupSpecs"])


def test_every_node_runs_one_pinned_image_of_this_version() -> None:
    images = {c["image"] for pod in _pods(_manifest()) for c in pod["containers"]}
    assert len(images) == 1
    tag = next(iter(images)).rsplit(":", 1)[1]
    assert tag == _project()["version"]  # not "latest": nodes must match the driver


def test_the_ray_version_is_the_images_and_within_the_extra() -> None:
    manifest_ray = _manifest()["spec"]["rayVersion"]
    pinned = re.search(r'"ray==([^"]+)"', DOCKERFILE.read_text())
    package = re.search(r'"pytest-aiperf\[ray\]==([^"]+)"', DOCKERFILE.read_text())
    assert pinned and package
    assert pinned.group(1) == manifest_ray
    assert package.group(1) == _project()["version"]
    extra = next(r for r in _project()["optional-dependencies"]["ray"] if r.startswith("ray"))
    assert manifest_ray in SpecifierSet(extra.removeprefix("ray"))


def test_every_container_has_ray_token_auth_and_no_host_network() -> None:
    for pod in _pods(_manifest()):
        assert not pod.get("hostNetwork")
        for container in pod["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # never inline


def test_the_dashboard_listens_on_loopback_only() -> None:
    head = _manifest()["spec"]["headGroupSpec"]["rayStartParams"]
    assert head["dashboard-host"] == "127.0.0.1"
