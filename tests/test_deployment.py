"""The deployment files agree with the code: compose, the image, the Helm values, the secrets.

Nothing here starts a container or a cluster. The files are parsed and checked against what they
name: images, variables of .env.sample, modules of the two code locations, files the Dockerfile
copies, Secrets, and the run config of dagster_k8s's k8s_job_executor, validated with Dagster's
own config schema and merged with the training steps' GPU tags by dagster_k8s's own code.
"""

import importlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.conftest import REPO_ROOT

DOCKER = REPO_ROOT / "deployment" / "docker"
KUBERNETES = REPO_ROOT / "deployment" / "kubernetes"
DOCKERFILE = DOCKER / "Dockerfile"
LOCATION_MODULES = {"ats": "ats_assets.definitions", "live": "live.location.definitions"}
PLACEHOLDERS = {"", "change-me"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _env_sample() -> set[str]:
    """Every variable .env.sample lists, set or commented out (``# NAME=``)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return set(pattern.findall((REPO_ROOT / ".env.sample").read_text()))


def _option(command: list[str], *names: str) -> str:
    """The value after the first of ``names`` in ``command``."""
    for i, arg in enumerate(command[:-1]):
        if arg in names:
            return command[i + 1]
    raise AssertionError(f"{command} has none of {names}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(DOCKER / "docker-compose.yml")


@pytest.fixture(scope="module")
def ats_services(compose) -> dict[str, dict]:
    """The services that run the ATS image (built from the Dockerfile)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


@pytest.fixture(scope="module")
def values() -> dict:
    return _load(KUBERNETES / "values.yaml")


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict]:
    docs = _load_all(KUBERNETES / "secrets.example.yaml")
    assert all(d["kind"] == "Secret" for d in docs)
    return {d["metadata"]["name"]: d for d in docs}


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


@pytest.fixture(scope="module")
def ats_job_with_k8s_executor() -> dg.JobDefinition:
    """The `ats` location's asset job, as it runs under dagster_k8s's k8s_job_executor."""
    from dagster_k8s import k8s_job_executor

    from ats_assets.definitions import defs

    return defs.resolve_implicit_global_asset_job_def().with_executor_def(k8s_job_executor)


# -- docker compose ----------------------------------------------------------------------------
def test_every_deployment_yaml_file_parses():
    for path in [*DOCKER.glob("*.yml"), *DOCKER.glob("*.yaml"), *KUBERNETES.glob("*.yaml")]:
        assert _load_all(path), path


def test_every_compose_image_is_built_from_the_dockerfile_or_a_tagged_public_image(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            build = service["build"]
            context = (DOCKER / build["context"]).resolve()
            assert context == REPO_ROOT, name
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        else:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and "/" not in tag, f"{name}: {service['image']} has no tag"
    assert {s["image"] for s in compose["services"].values() if "build" in s} == {"ats:latest"}


def test_the_compose_file_runs_every_service_the_deployment_needs(compose):
    assert set(compose["services"]) >= {
        "timescaledb", "redis", "ats-code", "live-code", "webserver", "daemon", "ats-exporter",
    }  # fmt: skip
    assert compose["services"]["timescaledb"]["image"] == "timescale/timescaledb:latest-pg16"
    assert compose["services"]["redis"]["image"] == "redis:7-alpine"
    long_running = {n: s for n, s in compose["services"].items() if s.get("restart") != "no"}
    assert all("healthcheck" in s for s in long_running.values()), "a service lacks a healthcheck"


def test_every_variable_compose_interpolates_is_in_env_sample():
    text = (DOCKER / "docker-compose.yml").read_text()
    # ${NAME}, ${NAME:-default}, ${NAME:?error}; $${NAME} is the container shell's, not compose's
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert referenced, "compose interpolates no variable"
    assert referenced <= _env_sample(), referenced - _env_sample()


def test_the_ats_services_read_the_env_file_and_override_only_known_variables(ats_services):
    known = _env_sample()
    for name, service in ats_services.items():
        assert (DOCKER / service["env_file"]).resolve() == REPO_ROOT / ".env", name
        assert set(service["environment"]) <= known, (name, set(service["environment"]) - known)
        assert service["environment"]["ATS_WAREHOUSE"] == "postgres", name  # not a shared DuckDB


def test_every_variable_the_settings_and_notifier_read_is_in_env_sample():
    names: set[str] = set()
    for module in ("settings.py", "notifier.py"):
        text = (REPO_ROOT / "ats_resources" / module).read_text()
        names |= set(re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"', text))
    assert {"TIMESCALEDB_HOST", "REDIS_HOST", "ALPACA_API_KEY", "SLACK_WEBHOOK_URL"} <= names
    assert names <= _env_sample(), names - _env_sample()


def test_the_compose_services_point_at_the_compose_database_and_redis(compose, ats_services):
    for name, service in ats_services.items():
        environment = service["environment"]
        assert environment["TIMESCALEDB_HOST"] in compose["services"], name
        assert environment["REDIS_HOST"] in compose["services"], name


def test_the_container_workspace_serves_both_locations_from_compose_code_servers(compose):
    workspace = _load(DOCKER / "workspace.yaml")["load_from"]
    servers = {e["grpc_server"]["location_name"]: e["grpc_server"] for e in workspace}
    local = _load(REPO_ROOT / "workspace.yaml")["load_from"]
    assert set(servers) == {e["python_module"]["location_name"] for e in local} == {"ats", "live"}
    for location, server in servers.items():
        command = compose["services"][server["host"]]["command"]
        assert command[:3] == ["dagster", "code-server", "start"], location
        assert int(_option(command, "-p", "--port")) == server["port"], location
        assert _option(command, "--location-name") == location
        module = _option(command, "-m", "--module-name")
        assert module == LOCATION_MODULES[location]
        assert isinstance(importlib.import_module(module).defs, dg.Definitions)


def test_the_webserver_and_daemon_load_the_workspace_the_image_holds(compose, dockerfile):
    copies = {
        parts[-1]: parts[-2]
        for parts in (shlex.split(line) for line in dockerfile if line.startswith("COPY "))
    }
    for name in ("webserver", "daemon"):
        workspace = _option(compose["services"][name]["command"], "-w", "--workspace")
        assert copies.get(workspace) == "deployment/docker/workspace.yaml", name


def test_compose_commands_name_executables_the_project_installs(ats_services):
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    installed = {"dagster", "dagster-webserver", "dagster-daemon", *scripts}
    for name, service in ats_services.items():
        assert service["command"][0] in installed, name
    bin_dir = Path(sys.executable).parent
    assert all((bin_dir / exe).exists() for exe in installed)


# -- the image -----------------------------------------------------------------------------------
def test_the_image_is_python_3_11_slim_and_copies_only_files_of_the_repo(dockerfile):
    assert dockerfile[0] == "FROM python:3.11-slim"
    sources = [
        source
        for line in dockerfile
        if line.startswith("COPY ") and "--from" not in line
        for source in shlex.split(line)[1:-1]
    ]
    assert "pyproject.toml" in sources and "deployment/dagster.yaml" in sources
    missing = [s for s in sources if not (REPO_ROOT / s).exists()]
    assert not missing, missing


def test_the_image_uses_the_production_instance_at_its_dagster_home(dockerfile, ats_services):
    env = " ".join(line for line in dockerfile if line.startswith("ENV "))
    home = re.search(r"DAGSTER_HOME=(\S+)", env).group(1)
    assert any(
        line == "COPY deployment/dagster.yaml ${DAGSTER_HOME}/dagster.yaml" for line in dockerfile
    )
    assert {s["environment"]["DAGSTER_HOME"] for s in ats_services.values()} == {home}


def test_the_default_command_serves_the_ats_code_location(dockerfile):
    command = json.loads(next(line for line in dockerfile if line.startswith("CMD "))[4:])
    assert command[:3] == ["dagster", "code-server", "start"]
    assert importlib.util.find_spec(_option(command, "-m")) is not None


def test_the_image_installs_torch_and_dagster_k8s_at_the_versions_pyproject_pins():
    result = subprocess.run(
        [sys.executable, str(DOCKER / "pins.py"), str(REPO_ROOT / "pyproject.toml"),
         "torch", "dagster-k8s"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    torch, k8s = result.stdout.split()
    assert torch in declared and torch.startswith("torch==")
    assert k8s in declared and k8s.startswith("dagster-k8s")


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = set((DOCKER / "Dockerfile.dockerignore").read_text().split())
    assert {".env", ".venv", ".dagster", "data", ".git"} <= ignored


# -- Helm ----------------------------------------------------------------------------------------
def test_the_helm_values_deploy_both_code_locations_from_one_image(values):
    deployments = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    by_name = {d["name"]: d for d in deployments}
    assert set(by_name) == set(LOCATION_MODULES)
    for name, deployment in by_name.items():
        module = _option(deployment["dagsterApiGrpcArgs"], "-m", "--module-name")
        assert module == LOCATION_MODULES[name]
        assert importlib.util.find_spec(module) is not None
        assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert len({json.dumps(d["image"], sort_keys=True) for d in deployments}) == 1
    assert len({d["port"] for d in deployments}) == len(deployments)


def test_the_helm_values_launch_runs_as_kubernetes_jobs_with_the_ats_secrets(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "ats-secrets"} in launcher["envSecrets"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_the_helm_values_use_the_external_timescaledb_with_a_password_from_a_secret(
    values, secrets
):
    postgresql = values["postgresql"]
    assert postgresql["enabled"] is False and postgresql["postgresqlHost"]
    assert "postgresqlPassword" not in postgresql
    assert values["generatePostgresqlPasswordSecret"] is False
    secret = secrets[values["global"]["postgresqlSecretName"]]
    assert set(secret["stringData"]) == {"postgresql-password"}


def test_every_secret_the_helm_values_name_is_in_the_example_secrets(values, secrets):
    deployments = values["dagster-user-deployments"]["deployments"]
    named = {
        ref["name"]
        for source in [*deployments, values["runLauncher"]["config"]["k8sRunLauncher"]]
        for ref in source.get("envSecrets", [])
    }
    assert named == {"ats-secrets"}
    assert named | {values["global"]["postgresqlSecretName"]} <= set(secrets)


def test_the_example_secrets_hold_only_placeholders_for_env_sample_variables(secrets):
    data = secrets["ats-secrets"]["stringData"]
    assert {"TIMESCALEDB_PASSWORD", "ALPACA_API_KEY", "ALPACA_API_SECRET"} <= set(data)
    assert set(data) <= _env_sample(), set(data) - _env_sample()
    for secret in secrets.values():
        assert "data" not in secret  # base64 would hide a real value from review
        assert set(secret["stringData"].values()) <= PLACEHOLDERS, secret["metadata"]["name"]


def test_the_code_locations_env_names_variables_of_env_sample(values):
    for deployment in values["dagster-user-deployments"]["deployments"]:
        env = deployment["env"]
        assert set(env) <= _env_sample(), set(env) - _env_sample()
        assert env["ATS_WAREHOUSE"] == "postgres", deployment["name"]


def test_the_data_volume_is_read_write_many_and_mounted_at_the_data_dir(values):
    claim = _load(KUBERNETES / "data-volume.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in values["dagster-user-deployments"]["deployments"]:
        volumes = {v["name"]: v for v in deployment["volumes"]}
        for mount in deployment["volumeMounts"]:
            pvc = volumes[mount["name"]]["persistentVolumeClaim"]
            assert pvc["claimName"] == claim["metadata"]["name"]
            assert mount["mountPath"] == deployment["env"]["ATS_DATA_DIR"]


# -- k8s_job_executor ----------------------------------------------------------------------------
def _k8s_run_config() -> dict:
    return _load(KUBERNETES / "run-config-k8s-executor.yaml")


def test_the_k8s_executor_run_config_validates_against_the_executor_schema(
    ats_job_with_k8s_executor,
):
    run_config = _k8s_run_config()
    resolved = dg.validate_run_config(ats_job_with_k8s_executor, run_config)
    assert resolved["execution"]["k8s"]["max_concurrent"] == 8
    ops = {node.name for node in ats_job_with_k8s_executor.graph.nodes}
    per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) <= ops, set(per_step) - ops


def test_a_misspelt_k8s_executor_setting_is_rejected(ats_job_with_k8s_executor):
    run_config = _k8s_run_config()
    run_config["execution"]["config"]["per_step_k8s_config"]["xgboost_model"]["pod_spec"] = {}
    with pytest.raises(dg.DagsterInvalidConfigError, match="pod_spec"):
        dg.validate_run_config(ats_job_with_k8s_executor, run_config)


def test_every_gpu_step_pod_asks_for_a_gpu_selects_gpu_nodes_and_tolerates_their_taint(
    ats_job_with_k8s_executor,
):
    """The merge K8sStepHandler does: executor's step config, the op's tag, the per-step config."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

    config = _k8s_run_config()["execution"]["config"]
    gpu_nodes = [
        node
        for node in ats_job_with_k8s_executor.graph.nodes
        if "nvidia.com/gpu" in node.tags.get("dagster-k8s/config", "")
    ]
    assert {n.name for n in gpu_nodes} == {"xgboost_model", "lstm_model", "attention_model"}
    for node in gpu_nodes:
        context = K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["step_k8s_config"])
        )
        for layer in (
            get_user_defined_k8s_config(node.tags),
            UserDefinedDagsterK8sConfig.from_dict(config["per_step_k8s_config"][node.name]),
        ):
            context = context.merge(K8sContainerContext(run_k8s_config=layer))
        container = context.run_k8s_config.container_config
        pod = context.run_k8s_config.pod_spec_config
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", node.name
        assert pod["node_selector"] == {"ats/accelerator": "nvidia-gpu"}, node.name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ], node.name
