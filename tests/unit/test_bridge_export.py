"""Export to Kubernetes: strict-valid documents, and a round trip that keeps revisions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from podctl.bridge import export, load

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.parent for p in (ROOT / "stacks").glob("*/stack.yaml"))
# A current Kubernetes version with schemas bundled in kubernetes-validate.
K8S_VERSION = "1.30.0"


def pods(loaded) -> list[tuple[str, str, int, str]]:  # type: ignore[no-untyped-def]
    return sorted((s.name, p.name, p.replicas, p.revision) for s in loaded.stacks for p in s.pods)


@pytest.mark.parametrize("stack", STACKS, ids=[p.name for p in STACKS])
def test_every_exported_document_is_valid_kubernetes(stack: Path) -> None:
    loaded = load([stack], environ={})
    assert not loaded.issues
    text, _ = export(loaded, "kubernetes", environ={})
    documents = list(yaml.safe_load_all(text))
    assert documents[0]["kind"] == "Namespace"
    for doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("stack", STACKS, ids=[p.name for p in STACKS])
def test_round_trip_keeps_pods_replicas_and_revisions(stack: Path, tmp_path: Path) -> None:
    loaded = load([stack], environ={})
    text, _ = export(loaded, "kubernetes", environ={}, include_secret_values=True)
    manifest = tmp_path / "exported.yaml"
    manifest.write_text(text)
    again = load([manifest], environ={})
    assert not again.issues, [str(i) for i in again.issues]
    assert pods(again) == pods(loaded)
    assert [(s.name, s.services) for s in again.stacks] == [
        (s.name, s.services) for s in loaded.stacks
    ]


def test_secret_values_only_when_asked(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        textwrap.dedent(
            """\
            name: app
            pods:
              web:
                image: busybox
                env: {TOKEN: {secret: token}}
            secrets: {token: {env: APP_TOKEN}}
            """
        )
    )
    environ = {"APP_TOKEN": "s3cr3t-value"}
    loaded = load([stack], environ=environ)
    text, _ = export(loaded, "kubernetes", environ=environ)
    (secret,) = [d for d in yaml.safe_load_all(text) if d["kind"] == "Secret"]
    assert secret["data"] == {"token": ""}
    assert secret["metadata"]["annotations"] == {"podctl.io/secret-source": "env:APP_TOKEN"}
    assert "s3cr3t" not in text
    # The annotation brings the source back: same revision without the value in the file.
    manifest = tmp_path / "k8s.yaml"
    manifest.write_text(text)
    assert pods(load([manifest], environ=environ)) == pods(loaded)

    text, _ = export(loaded, "kubernetes", environ=environ, include_secret_values=True)
    (secret,) = [d for d in yaml.safe_load_all(text) if d["kind"] == "Secret"]
    assert secret["data"] == {"token": "czNjcjN0LXZhbHVl"}


def test_imported_kubernetes_exports_back(tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: site}
            data: {index.html: hi}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              replicas: 2
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  containers:
                  - name: web
                    image: busybox
                    ports: [{name: http, containerPort: 8080}]
                    readinessProbe: {httpGet: {port: http}}
                    volumeMounts: [{name: s, mountPath: /www}]
                  volumes: [{name: s, configMap: {name: site}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec: {type: NodePort, selector: {app: web}, ports: [{port: 8080, nodePort: 30080}]}
            """
        )
    )
    loaded = load([manifest], environ={})
    text, _ = export(loaded, "kubernetes", environ={}, include_secret_values=True)
    for doc in yaml.safe_load_all(text):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    again_path = tmp_path / "again.yaml"
    again_path.write_text(text.replace("namespace: app", "namespace: app"))
    again = load([again_path], environ={})
    assert pods(again) == pods(loaded)


def test_compose_export_for_swarm() -> None:
    loaded = load([ROOT / "stacks" / "shop"], environ={})
    text, report = export(loaded, "compose", environ={})
    compose = yaml.safe_load(text)
    web = compose["services"]["web"]
    assert web["deploy"]["replicas"] == 2
    assert web["deploy"]["update_config"] == {
        "parallelism": 1,
        "order": "start-first",  # max_unavailable 0: surge first
        "failure_action": "rollback",
        "monitor": "1s",
    }
    assert web["ports"] == [
        {"target": 8080, "published": 8081, "protocol": "tcp", "mode": "ingress"}
    ]
    assert web["healthcheck"]["test"][:2] == ["CMD", "wget"]
    assert compose["services"]["api"]["secrets"] == [
        {"source": "api-key", "target": "/run/secrets/api-key", "mode": 0o400}
    ]
    assert compose["secrets"]["api-key"]["file"].endswith("stacks/shop/secrets/api-key")
    assert compose["volumes"] == {"dbdata": {"name": "shop_dbdata"}}
    lines = [f"{e.document} {e.path}: {e.verdict}" for e in report]
    assert "config api-page data: approximated" in lines
    assert "service web bind: approximated" in lines
    # In-stack services resolve by DNS round-robin (no IPVS virtual IP needed);
    # the published one keeps the VIP the routing mesh needs.
    assert compose["services"]["api"]["deploy"]["endpoint_mode"] == "dnsrr"
    assert "endpoint_mode" not in web["deploy"]
    # Compose interpolates `$`: the shell's `$(...)` in api's command is escaped.
    assert "$$(sha256sum" in compose["services"]["api"]["command"][2]
    # A tcp check that works with busybox's nc (no -z) as with netcat-openbsd.
    db_test = compose["services"]["db"]["healthcheck"]["test"]
    assert db_test[0] == "CMD-SHELL" and "nc -w 1 127.0.0.1 5432 </dev/null" in db_test[1]
    assert compose["configs"]["api-page"] == {"external": True, "name": "shop_api-page"}


def test_compose_startup_probe_becomes_the_start_period(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        textwrap.dedent(
            """\
            name: su
            pods:
              web:
                image: busybox:1.36
                ports: {http: 80}
                readiness: {http: {port: http}, period: 1s}
                startup: {exec: [test, -f, /tmp/ok], period: 2s, failure_threshold: 15}
            """
        )
    )
    text, report = export(load([stack], environ={}), "compose", environ={})
    assert yaml.safe_load(text)["services"]["web"]["healthcheck"]["start_period"] == "30s"
    assert "pod web startup: approximated (the healthcheck's start_period (30s))" in [
        f"{e.document} {e.path}: {e.verdict} ({e.reason})" for e in report
    ]
