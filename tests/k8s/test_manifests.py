"""The manifests in k8s/: KubeRay objects valid against their CRD schemas, the CronJob well formed,
and the cross-references that would only break on a cluster (scripts, flags, GPUs, secrets, image)."""

from __future__ import annotations

import copy
import functools
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.k8s.manifests import (K8S, REPO, cluster_spec_schema, cluster_specs, containers, crd_dir,
                                 load_manifests, missing_crds, schema_errors)

DOCS = load_manifests()
KUBERAY = [(name, doc) for name, doc in DOCS if doc.get("apiVersion", "").startswith("ray.io/")]
CRONJOBS = [doc for _, doc in DOCS if doc.get("kind") == "CronJob"]
needs_crds = pytest.mark.skipif(bool(missing_crds()), reason=(
    f"KubeRay CRD files {missing_crds()} not found in {crd_dir()} "
    "(set VIDINDEX_SHARED_DIR to the shared folder that holds reference/kuberay-crds/)"))


def by_kind(kind: str) -> dict:
    [doc] = [doc for _, doc in DOCS if doc.get("kind") == kind]
    return doc


def doc_id(item) -> str:
    name, doc = item
    return f"{name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def test_k8s_holds_the_expected_objects():
    kinds = sorted((doc["apiVersion"], doc["kind"]) for _, doc in DOCS)
    assert kinds == [("batch/v1", "CronJob"), ("ray.io/v1", "RayCluster"),
                     ("ray.io/v1", "RayCronJob"), ("ray.io/v1", "RayJob"), ("ray.io/v1", "RayService")]
    for _, doc in DOCS:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


# --- schema validation ---------------------------------------------------------------------

@needs_crds
@pytest.mark.parametrize("item", KUBERAY, ids=doc_id)
def test_kuberay_object_matches_its_crd_schema(item):
    _, doc = item
    if missing_crds([doc["kind"]]):  # RayService: its cluster is checked against RayCluster's CRD below
        pytest.skip(f"no {doc['kind']} CRD in {crd_dir()} ({missing_crds([doc['kind']])[0]})")
    assert schema_errors(doc) == []


def _set(doc: dict, path: str, value) -> dict:
    broken = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = broken
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return broken


DELETE = object()
BROKEN = {  # kind, path, value, what the error names
    "wrong type": ("RayCluster", "spec.workerGroupSpecs.0.maxReplicas", "eight", "maxReplicas"),
    "unknown field": ("RayJob", "spec.shutdownAfterJobsFinish", True, "shutdownAfterJobsFinish"),
    "missing required": ("RayCluster", "spec.headGroupSpec", DELETE, "headGroupSpec"),
    "bad quantity": ("RayJob", "spec.rayClusterSpec.workerGroupSpecs.0.template.spec.containers.0"
                     ".resources.requests.memory", "64 GB", "64 GB"),
    "list for a string": ("RayCronJob", "spec.jobTemplate.entrypoint", ["python"], "entrypoint"),
}


@needs_crds
@pytest.mark.parametrize("case", BROKEN)
def test_validator_rejects_a_broken_manifest(case):
    kind, path, value, named = BROKEN[case]
    errors = schema_errors(_set(by_kind(kind), path, value))
    assert errors, f"{case}: the broken {kind} passed validation"
    assert any(named in error for error in errors), errors


def test_cronjob_is_well_formed():
    [cron] = CRONJOBS
    spec = cron["spec"]
    assert set(spec) <= {"schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds", "suspend",
                         "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "jobTemplate"}
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"  # never two submitters following runs at once
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    for container in pod["containers"]:
        assert isinstance(container["name"], str) and isinstance(container["image"], str)
        assert all(isinstance(arg, str) for arg in container.get("command", []) + container.get("args", []))


# --- cross-references ----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def help_flags(script: str) -> tuple[frozenset, str]:
    """The --flags of jobs/<script> as its argparse prints them, and the help text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, f"jobs/{script}", "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout)), result.stdout


def entrypoints() -> list[tuple[str, list[str]]]:
    """(where, argv) of every Ray job entrypoint the manifests run."""
    found = [("RayJob", shlex.split(by_kind("RayJob")["spec"]["entrypoint"])),
             ("RayCronJob", shlex.split(by_kind("RayCronJob")["spec"]["jobTemplate"]["entrypoint"]))]
    for container in containers(CRONJOBS):
        argv = container.get("command", []) + container.get("args", [])
        assert argv[:3] == ["ray", "job", "submit"] and "--" in argv, argv
        found.append(("CronJob", argv[argv.index("--") + 1:]))
    return found


def unknown_flags(argv: list[str]) -> set[str]:
    """The --flags of `python jobs/X.py ...` that the job's argparse does not list in --help."""
    script = argv[1].split("/")[1]
    known, _ = help_flags(script)
    if script == "nightly_job.py":  # it passes every flag it does not know on to `vidindex index`
        known |= help_flags("index_job.py")[0]
    return {arg.split("=")[0] for arg in argv[2:] if arg.startswith("--")} - known


def test_flag_check_catches_a_flag_the_job_does_not_take():
    argv = ["python", "jobs/nightly_job.py", "s3://a/", "--db", "s3://b", "--fps", "1", "--lock-ttl-days=3"]
    assert unknown_flags(argv) == {"--lock-ttl-days"}  # would reach `vidindex index` and fail the run
    assert unknown_flags(["python", "jobs/index_job.py", "x", "--db=y", "--lock", "z"]) == {"--lock"}


@pytest.mark.parametrize("where,argv", entrypoints(), ids=[where for where, _ in entrypoints()])
def test_entrypoint_script_and_flags_exist(where, argv):
    assert argv[0] == "python" and re.fullmatch(r"jobs/\w+\.py", argv[1]), argv
    script = argv[1].split("/")[1]
    assert (REPO / "jobs" / script).is_file(), f"{where} runs {argv[1]}, which is not in jobs/"
    assert unknown_flags(argv) == set(), f"{where} passes flags its job does not take"
    assert "--db" in argv or any(arg.startswith("--db=") for arg in argv)  # both jobs need a database
    assert any(not arg.startswith("-") for arg in argv[2:]), f"{where} names no source"


def test_cronjob_submits_to_the_long_lived_cluster():
    cluster = by_kind("RayCluster")
    [head] = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    [dashboard] = [p["containerPort"] for p in head["ports"] if p["name"] == "dashboard"]
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    [submit] = containers(CRONJOBS)
    # KubeRay names the head Service <cluster>-head-svc.
    assert f"--address=http://{cluster['metadata']['name']}-head-svc:{dashboard}" in submit["command"]


def test_nightly_runs_end_before_their_lock_goes_stale():
    """A run still going when its lock turns stale could overlap the next night's run."""
    _, text = help_flags("nightly_job.py")
    ttl_hours = float(re.search(r"--lock-ttl-hours.*?default ([\d.]+)", text, re.S).group(1))
    deadlines = [by_kind("RayCronJob")["spec"]["jobTemplate"]["activeDeadlineSeconds"],
                 CRONJOBS[0]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]]
    assert all(0 < deadline < ttl_hours * 3600 for deadline in deadlines), deadlines


@pytest.mark.parametrize("item", KUBERAY, ids=doc_id)
def test_gpu_workers_request_gpus_and_exist_when_a_run_starts(item):
    _, doc = item
    specs = cluster_specs(doc)
    assert specs, f"{doc['kind']} defines no cluster"
    for spec in specs:
        for head in spec["headGroupSpec"]["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in head.get("resources", {}).get("limits", {})
        assert spec["headGroupSpec"]["rayStartParams"].get("metrics-export-port")
        for group in spec["workerGroupSpecs"]:
            [worker] = group["template"]["spec"]["containers"]
            requests, limits = worker["resources"]["requests"], worker["resources"]["limits"]
            # Extended resources need request == limit; one indexing actor per GPU.
            assert int(requests["nvidia.com/gpu"]) == int(limits["nvidia.com/gpu"]) >= 1
            assert group["rayStartParams"].get("metrics-export-port")
            # A run sizes its actor pool from the GPUs present when it starts: never zero.
            assert 1 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
            if not spec.get("enableInTreeAutoscaling"):
                assert group["minReplicas"] == group["maxReplicas"], "fixed size without the autoscaler"


AWS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.I)


def test_credentials_are_secret_references_not_values():
    assert not any(doc["kind"] == "Secret" for _, doc in DOCS), "secrets are created by hand, not committed"
    for path in K8S.iterdir():
        assert not AWS_KEY.search(path.read_text()), f"{path.name} holds what looks like an AWS key"
    referenced = set()
    for _, doc in DOCS:
        for container in containers(doc):
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{env['name']} is inlined in {container['name']}"
                    referenced.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert referenced == {"vidindex-object-store", "vidindex-serve"}
    assert "vidindex-object-store" in (REPO / "docs" / "kubernetes.md").read_text()  # docs create it
    assert "kubectl create secret generic vidindex-serve" in (REPO / "docs" / "serve.md").read_text()


@pytest.mark.parametrize("item", KUBERAY, ids=doc_id)
def test_head_and_workers_get_object_store_credentials(item):
    """The driver (on the head) probes videos; workers decode them and the committer writes."""
    for spec in cluster_specs(item[1]):
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for container in containers(groups):
            names = {env["name"] for env in container.get("env", [])}
            assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names, container["name"]


def test_image_and_ray_version_agree_everywhere():
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    images = {c["image"] for _, doc in DOCS for c in containers(doc)}
    assert images == {f"vidindex:{version}"}
    ray_versions = {spec["rayVersion"] for _, doc in KUBERAY for spec in cluster_specs(doc)}
    assert len(ray_versions) == 1
    workdirs = {c.get("workingDir") for _, doc in KUBERAY for spec in cluster_specs(doc)
                for c in containers([spec["headGroupSpec"], *spec["workerGroupSpecs"]])}
    assert len(workdirs) == 1 and None not in workdirs, "relative job paths need one known cwd"
    dockerfile = REPO / "Dockerfile"
    if dockerfile.is_file():
        text = dockerfile.read_text()
        assert re.search(rf"^FROM rayproject/ray:{re.escape(ray_versions.pop())}-", text, re.M)
        assert re.search(rf"^WORKDIR {re.escape(workdirs.pop())}$", text, re.M)
        assert re.search(r"^COPY .*\bjobs/", text, re.M)
        assert f"vidindex:{version}" in text


# --- the RayService of `vidindex serve` ------------------------------------------------------

SERVE_ARGS = {"db", "model", "device", "replicas", "open"}  # what vidindex.serve.app.build_app reads


def serve_config() -> dict:
    import yaml

    return yaml.safe_load(by_kind("RayService")["spec"]["serveConfigV2"])


def app_deployments(app) -> dict:
    """name -> Deployment of a bound Serve application and of the applications bound into it."""
    from ray.serve.deployment import Application

    found = {}
    stack = [app]
    while stack:
        deployment = stack.pop()._bound_deployment
        found[deployment.name] = deployment
        stack += [a for a in [*deployment.init_args, *deployment.init_kwargs.values()] if isinstance(a, Application)]
    return found


@needs_crds
def test_rayservice_cluster_matches_the_raycluster_crd():
    """RayService.spec.rayClusterConfig is a RayClusterSpec: the RayCluster CRD's schema of spec."""
    service = by_kind("RayService")
    assert set(service["spec"]) == {"serveConfigV2", "rayClusterConfig"}
    assert isinstance(service["spec"]["serveConfigV2"], str)  # KubeRay takes it as a YAML string
    schema = cluster_spec_schema(service["apiVersion"])
    assert schema_errors(service["spec"]["rayClusterConfig"], schema) == []
    broken = _set(service, "spec.rayClusterConfig.workerGroupSpecs.0.maxReplicas", "four")
    assert any("maxReplicas" in e for e in schema_errors(broken["spec"]["rayClusterConfig"], schema))
    unknown = _set(service, "spec.rayClusterConfig.headGroupSpec.rayStartParam", {})
    assert any("rayStartParam" in e for e in schema_errors(unknown["spec"]["rayClusterConfig"], schema))


def test_serve_config_is_valid_for_ray_serve_and_matches_the_app():
    from ray.serve.schema import ServeDeploySchema

    from vidindex.serve import app as serve_app

    config = serve_config()
    ServeDeploySchema.model_validate(config)  # Ray Serve's own check of a config file
    [application] = config["applications"]
    module, _, builder = application["import_path"].partition(":")
    assert (module, builder) == ("vidindex.serve.app", "build_app") and callable(serve_app.build_app)
    assert set(application["args"]) <= SERVE_ARGS and application["args"]["db"]
    assert application["args"].get("device") == "cuda"  # the head, where the app is built, has no GPU
    # Reachable beyond loopback: the app must get a token (VIDINDEX_TOKEN), not run open.
    assert config["http_options"]["host"] == "0.0.0.0" and not application["args"].get("open")
    built = app_deployments(serve_app.application("s3://x/db", device="cuda", cluster={"GPU": 1, "CPU": 16}))
    named = {d["name"]: d for d in application["deployments"]}
    assert set(named) <= set(built), "a deployment the app does not have would be ignored"
    assert named["ArchiveJobs"].get("num_replicas", 1) == 1  # the jobs live in one replica


def test_rayservice_model_replicas_fit_the_gpu_workers():
    service = by_kind("RayService")
    asker = {d["name"]: d for d in serve_config()["applications"][0]["deployments"]}["Asker"]
    [group] = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    [worker] = group["template"]["spec"]["containers"]
    requests = worker["resources"]["requests"]
    assert asker["ray_actor_options"]["num_gpus"] == 1 <= int(requests["nvidia.com/gpu"])
    assert asker["ray_actor_options"]["num_cpus"] <= int(requests["cpu"])
    assert asker["autoscaling_config"]["max_replicas"] <= group["maxReplicas"] * int(requests["nvidia.com/gpu"])
    port = serve_config()["http_options"]["port"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    for container in (head, worker):  # proxies run on every node; KubeRay's serve Service targets "serve"
        assert {"name": "serve", "containerPort": port} in container["ports"]
        token = [env for env in container["env"] if env["name"] == "VIDINDEX_TOKEN"]
        assert token and token[0]["valueFrom"]["secretKeyRef"] == {"name": "vidindex-serve", "key": "token"}
