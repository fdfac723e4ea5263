"""deploy/ checked statically: Docker and Kubernetes cannot run on these machines, so the compose file, the
Dockerfile and the Helm values are parsed and held to what the code expects (module, ports, images, the
environment variables and secrets it reads). deploy/dagster.yaml itself also runs for real, under
dagster-daemon on PostgreSQL, in test_dagster_daemon.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from wan_pipeline.assets.dataset import dataset_definitions
from wan_pipeline.planning.spec import load_spec
from wan_pipeline.providers.registry import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
MODULE = "wan_pipeline.definitions"
PROVIDER_TAG = "wan_pipeline/provider"
S3_VARS = {"WAN_PIPELINE_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def env_refs(node: Any) -> set[str]:
    """Every `{env: NAME}` a Dagster config file reads."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {str(node["env"])}
        return set().union(*(env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node)) if node else set()
    return set()


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "compose environments are written as maps (anchors merge into them)"
    return {str(k): str(v) for k, v in env.items() if k != "<<"}


def test_dagster_yaml_is_a_valid_instance_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load("dagster.yaml")
    for name in env_refs(config):
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else "x")
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text(encoding="utf-8"))
    validated = dagster_instance_config(str(tmp_path))[0]
    assert "postgres" in validated["storage"]
    assert validated["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert validated["compute_logs"]["class"] == "S3ComputeLogManager"
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert [lim["key"] for lim in limits] == [PROVIDER_TAG]
    assert config["concurrency"]["pools"]["granularity"] == "op"


def test_compose_services_share_one_image_and_pass_what_the_code_reads() -> None:
    compose = load("docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "s3", "bucket", "code", "webserver", "daemon"}
    code, web, daemon = services["code"], services["webserver"], services["daemon"]
    assert (DEPLOY.parent / code["build"]["context"].replace("..", ".") / code["build"]["dockerfile"]).is_file()
    assert code["image"] == web["image"] == daemon["image"] == services["bucket"]["image"]
    instance_vars = env_refs(load("dagster.yaml"))
    for name in ("code", "webserver", "daemon"):
        text = yaml.safe_dump(services[name])
        missing = {v for v in instance_vars if v not in text}
        assert not missing, f"{name} lacks {missing} that deploy/dagster.yaml reads"
    raw = (DEPLOY / "docker-compose.yaml").read_text(encoding="utf-8")
    for provider in PROVIDERS.values():  # only the code server (and its runs) gets provider keys
        assert f"{provider.key_env}: ${{{provider.key_env}:-}}" in raw
    assert "WAN_PIPELINE_SPECS" in compose_env(code)
    assert "DASHSCOPE_API_KEY" not in yaml.safe_dump(web) + yaml.safe_dump(daemon)
    assert daemon["command"][:2] == ["wan-pipeline", "daemon"]  # the quick backfill daemon, from the same image
    for var in S3_VARS:
        assert var in raw
    # Secrets are references to deploy/.env, never literal values; that file is ignored by git.
    for secret in ("POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert re.search(rf"{secret}: \$\{{{secret}:\?", raw), secret
    assert "deploy/.env" in (ROOT / ".gitignore").read_text(encoding="utf-8")
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    assert all(f"{v}=" in example for v in ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


def test_workspace_points_at_the_code_server_the_dockerfile_starts() -> None:
    workspace = load("workspace.yaml")
    server = workspace["load_from"][0]["grpc_server"]
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    cmd = re.search(r'^CMD \[(.*)\]$', dockerfile, re.M)
    assert cmd is not None
    args = [a.strip().strip('"') for a in cmd.group(1).split(",")]
    assert args[:3] == ["dagster", "code-server", "start"]
    assert args[args.index("-m") + 1] == MODULE and args[args.index("-p") + 1] == str(server["port"])
    assert server["host"] == "code" and f"EXPOSE {server['port']}" in dockerfile
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):  # every source the image copies exists
        for path in copied.split():
            assert (ROOT / path).exists(), path
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in dockerfile and "/opt/dagster/dagster_home/" in dockerfile


def test_helm_values_use_the_k8s_launcher_and_name_the_secrets_the_code_reads() -> None:
    values = load("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert deployment["image"]["repository"] == values["dagsterWebserver"]["image"]["repository"]
    assert deployment["image"]["tag"] == values["dagsterWebserver"]["image"]["tag"]
    env = {e["name"] for e in deployment["env"]}
    assert {"WAN_PIPELINE_SPECS", "WAN_PIPELINE_S3_ENDPOINT_URL", "AWS_REGION"} <= env
    secrets = {s["name"] for s in deployment["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert secrets == {s["name"] for s in launcher["envSecrets"]}  # every run pod gets the same keys
    # docs/deploy.md creates those secrets with the variables the code reads
    for secret in secrets | {values["global"]["postgresqlSecretName"]}:
        assert f"kubectl create secret generic {secret}" in DOCS, secret
    for provider in PROVIDERS.values():
        assert provider.key_env in DOCS
    assert "AWS_SECRET_ACCESS_KEY" in DOCS
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert [lim["key"] for lim in queued["tagConcurrencyLimits"]] == [PROVIDER_TAG]
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"


def test_the_pool_documented_is_the_pool_of_the_generation_step() -> None:
    spec_path = DEPLOY / "specs" / "dashscope.yaml"
    spec = load_spec(spec_path)
    assert spec.is_s3  # the example for a shared deployment keeps nothing on local disk
    pools = {getattr(a, "op", None) and a.op.pool for a in dataset_definitions(spec_path).assets} - {None}
    assert pools == {f"wan_pipeline_{spec.provider}"}
    assert f"dagster instance concurrency set wan_pipeline_{spec.provider}" in DOCS
    assert "cannot run" in DOCS.lower() or "can't run" in DOCS.lower()  # says plainly what is only checked
