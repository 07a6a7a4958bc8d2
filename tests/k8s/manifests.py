"""Offline checks of the manifests in k8s/: loading them and validating KubeRay objects against
the openAPIV3Schema of their CRD version (the KubeRay v1.7.0 CRDs in ../shared/reference/)."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayCronJob": "ray.io_raycronjobs.yaml", "RayService": "ray.io_rayservices.yaml"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 3 MB of YAML


def crd_dir() -> Path:
    shared = Path(os.environ.get("VIDINDEX_SHARED_DIR") or REPO.parent / "shared")
    return shared / "reference" / "kuberay-crds"


def missing_crds(kinds=("RayCluster", "RayJob", "RayCronJob")) -> list[str]:
    """The CRD files of `kinds` that are not in crd_dir() (RayService's is checked on its own:
    its spec.rayClusterConfig is validated against the RayCluster CRD either way)."""
    return [CRD_FILES[kind] for kind in kinds if not (crd_dir() / CRD_FILES[kind]).is_file()]


def load_manifests() -> list[tuple[str, dict]]:
    """(file name, document) for every non-empty YAML document in k8s/."""
    docs = []
    for path in sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")]):
        with open(path) as f:
            docs += [(path.name, doc) for doc in yaml.load_all(f, Loader=Loader) if doc is not None]
    return docs


@functools.lru_cache(maxsize=None)
def crd_schema(kind: str, api_version: str) -> dict:
    """The openAPIV3Schema of `kind` at `api_version` (e.g. ray.io/v1), made strict."""
    group, _, version = api_version.partition("/")
    with open(crd_dir() / CRD_FILES[kind]) as f:
        crd = yaml.load(f, Loader=Loader)
    assert crd["spec"]["group"] == group, f"{CRD_FILES[kind]} is for group {crd['spec']['group']}"
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            assert entry.get("served"), f"{kind} {api_version} is not served by this CRD"
            return strict(entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"{CRD_FILES[kind]} has no version {version}")


def strict(schema: dict) -> dict:
    """A copy of `schema` that rejects fields it does not declare.

    CRD schemas leave additionalProperties open because the API server prunes unknown fields
    rather than checking them; kubectl's default strict field validation rejects them instead.
    A misspelt field (e.g. shutdownAfterJobsFinish) would be silently dropped by pruning, so the
    tests reject it, as kubectl does.
    """
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def schema_errors(doc: dict, schema: dict | None = None) -> list[str]:
    """Every violation of `doc`'s CRD schema (or of `schema`), as 'path: message' (empty when valid).

    CEL rules (x-kubernetes-validations) are not evaluated: that needs an API server.
    """
    import jsonschema

    validator = jsonschema.Draft7Validator(schema or crd_schema(doc["kind"], doc["apiVersion"]))
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for e in validator.iter_errors(doc))


def cluster_spec_schema(api_version: str) -> dict:
    """The RayCluster CRD's schema of spec: the RayClusterSpec that RayJob.spec.rayClusterSpec and
    RayService.spec.rayClusterConfig also are in KubeRay's API."""
    return crd_schema("RayCluster", api_version)["properties"]["spec"]


def cluster_specs(doc: dict) -> list[dict]:
    """The RayCluster specs a KubeRay object creates (inline ones of RayJob / RayCronJob too)."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        return [spec]
    if doc["kind"] == "RayJob":
        return [spec["rayClusterSpec"]] if "rayClusterSpec" in spec else []
    if doc["kind"] == "RayCronJob":
        template = spec.get("jobTemplate", {})
        return [template["rayClusterSpec"]] if "rayClusterSpec" in template else []
    if doc["kind"] == "RayService":
        return [spec["rayClusterConfig"]] if "rayClusterConfig" in spec else []
    return []


def containers(node) -> list[dict]:
    """Every container (and init container) anywhere below `node`."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict)]
            found += containers(value)
    elif isinstance(node, list):
        for value in node:
            found += containers(value)
    return found
