"""Deployment files, validated statically (no Docker engine or Kubernetes
cluster runs here): the compose file against the compose-spec schema, the
manifests against Kubernetes 1.34's schemas (strict), and the invariants
we rely on."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_server import config as http_config
from rpc_server import config as rpc_config
from tests.servers import ROOT

BIN = Path(sys.executable).parent
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _interpolate(value: str, environ: Mapping[str, str]) -> str:
    """${NAME:-default} as docker compose resolves it."""
    return _VARIABLE.sub(lambda m: environ.get(m[1]) or (m[2] or ""), value)


def _variables_read_by() -> dict[str, set[str]]:
    """The environment variables each server reads its settings from."""
    http: dict[str, str] = {}
    http_config.export(http_config.Config(), http)
    return {"rpc-server": set(rpc_config.environment(rpc_config.Config())), "http-server": set(http)}


def test_the_compose_file_validates_against_the_compose_spec() -> None:
    argv = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_rpc_replicas_found_through_etcd_and_publishes_only_what_it_should() -> None:
    services = _compose()["services"]
    assert services["rpc-server"]["deploy"]["replicas"] == 2
    assert "ports" not in services["rpc-server"]  # the RPC port stays inside the network
    assert services["rpc-server"]["environment"]["ETCD_ENDPOINTS"] == "http://etcd:2379"
    assert services["http-server"]["environment"]["RPC_ETCD"] == "http://etcd:2379"
    assert services["http-server"]["depends_on"]["rpc-server"]["condition"] == "service_healthy"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "./deploy/redis.conf:/usr/local/etc/redis/redis.conf:ro" in services["redis"]["volumes"]


PUBLISHED = {
    "redis": ("PUBLISH_REDIS_PORT", "127.0.0.1:{}:6379", 6379),
    "etcd": ("PUBLISH_ETCD_PORT", "127.0.0.1:{}:2379", 2379),
    "http-server": ("PUBLISH_HTTP_PORT", "{}:8080", 8080),
}


def test_every_published_port_can_be_moved_and_defaults_to_the_services_own() -> None:
    """A second stack, or one beside a local Redis, must not collide."""
    services = _compose()["services"]
    assert {name for name, service in services.items() if "ports" in service} == set(PUBLISHED)
    for name, (variable, mapping, default) in PUBLISHED.items():
        [published] = services[name]["ports"]
        assert _interpolate(published, {}) == mapping.format(default), name
        assert _interpolate(published, {variable: "40001"}) == mapping.format(40001), name


def test_every_variable_the_deployments_set_is_one_their_server_reads() -> None:
    """A misspelt setting is ignored without a word: SERVICE_NAME was."""
    read_by = _variables_read_by()
    services = _compose()["services"]
    for name, reads in read_by.items():
        unread = set(services[name]["environment"]) - reads
        assert not unread, f"docker-compose.yml sets {sorted(unread)} for {name}, which reads none of them"
    for deployment in (d for d in _documents() if d["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            unread = {variable["name"] for variable in container.get("env", [])} - read_by[name]
            assert not unread, f"deploy/k8s sets {sorted(unread)} for {name}, which reads none of them"


def test_compose_servers_agree_on_the_registered_service_name() -> None:
    services = _compose()["services"]
    names = {_interpolate(services[s]["environment"].get("RPC_SERVICE_NAME", ""), {}) for s in _variables_read_by()}
    assert names == {rpc_config.Config().service_name}, names


@pytest.mark.parametrize("name", ["rpc-server", "http-server"])
def test_dockerfiles_are_slim_non_root_locked_and_carry_the_idl(name: str) -> None:
    text = (ROOT / "deploy" / "docker" / f"{name}.Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "USER 65534:65534" in text
    assert "-c requirements.lock" in text
    assert "COPY idl ./idl" in text
    assert "COPY plumbing ./plumbing" in text  # both servers read their settings through it
    assert f"dockerfile: deploy/docker/{name}.Dockerfile" in (ROOT / "docker-compose.yml").read_text()


def test_the_kubernetes_manifests_validate_strictly() -> None:
    argv = [str(BIN / "kubernetes-validate"), "--strict", "-k", "1.34.0", *map(str, K8S)]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") >= 13


def _documents() -> list[dict[str, Any]]:
    return [doc for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_cluster_config_map_keeps_our_redis_settings() -> None:
    """deploy/redis.conf, less what a pod sets otherwise, must not drift."""
    config_map = next(d for d in _documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "redis-config")
    in_cluster = {line.strip() for line in config_map["data"]["redis.conf"].splitlines()}
    for line in (ROOT / "deploy" / "redis.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith(("bind ", "protected-mode ")):
            assert line in in_cluster, line


def test_every_deployment_has_probes_resources_a_budget_and_an_autoscaler() -> None:
    documents = _documents()
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"http-server", "rpc-server"}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"readinessProbe", "livenessProbe", "resources"} <= set(container), name
        assert {"requests", "limits"} <= set(container["resources"]), name
        kinds = {d["kind"] for d in documents if d["metadata"]["name"] == name}
        assert {"PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds, name
    rpc_service = next(d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "rpc")
    assert rpc_service["spec"]["clusterIP"] == "None"  # headless: the HTTP servers' RPC_DNS
