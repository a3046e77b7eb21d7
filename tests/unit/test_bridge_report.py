"""`podctl validate --report`, `render` and `export` on the command line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from podctl import labels
from podctl.cli import app
from podctl.reconcile.containers import container_labels

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2-secret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend}
spec:
  replicas: 2
  minReadySeconds: 5
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      nodeSelector: {disk: ssd}
      containers:
      - name: web
        image: busybox:1.36
        env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: password}}}]
        readinessProbe: {grpc: {port: 9000}}
      - {name: sidecar, image: envoy}
      initContainers: [{name: init, image: busybox}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec: {}
"""


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_report_names_every_loss(tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST)
    result = CliRunner().invoke(app, ["validate", "--report", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == [
        f"{path}:20:7: Deployment/frontend spec.template.spec.nodeSelector: ignored (one host)",
        f"{path}:25:26: Deployment/frontend spec.template.spec.containers[0].readinessProbe.grpc:"
        " not carried over (gRPC probes are not supported yet)",
        f"{path}:26:9: Deployment/frontend spec.template.spec.containers[1]: not carried over "
        "(podctl runs the first container of a pod only)",
        f"{path}:27:24: Deployment/frontend spec.template.spec.initContainers[0]: not carried "
        "over (init containers are not supported yet)",
        f"{path}:29:1: Ingress/web: not carried over (no ingress controller on one host: "
        "publish with a NodePort or LoadBalancer Service)",
        f"{path}: stack demo is valid (1 pods)",
    ]
    assert "hunter2" not in result.output


def test_invalid_input_exits_2_with_positions(tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST.replace("replicas: 2", "replicas: two"))
    result = CliRunner().invoke(app, ["validate", "--report", str(path)])
    assert result.exit_code == 2
    assert f"{path}:14:13: Deployment/frontend spec.replicas: expected an integer" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_render_json_revision_is_the_label(tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST)
    result = CliRunner().invoke(app, ["render", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    (stack,) = json.loads(result.stdout)
    assert stack["name"] == "demo"
    (pod,) = stack["pods"]
    assert (pod["name"], pod["replicas"]) == ("frontend", 2)
    assert stack["secrets"] == [
        {"name": "db.password", "source": "Secret/db key password", "value": "<redacted>"}
    ]
    assert "hunter2" not in result.output

    from podctl.bridge import load

    desired = load([path], environ={}).stacks[0]
    assert container_labels(desired.pods[0], 0)[labels.REVISION] == pod["revision"]


def test_export_kubernetes_and_compose(tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST)
    result = CliRunner().invoke(app, ["export", str(path), "--to", "kubernetes"])
    assert result.exit_code == 0, result.output
    assert "kind: Deployment" in result.stdout
    assert "hunter2" not in result.output
    result = CliRunner().invoke(app, ["export", str(path), "--to", "compose"])
    assert result.exit_code == 0, result.output
    assert "replicas: 2" in result.stdout
    assert "warning:" in result.stderr
    result = CliRunner().invoke(app, ["export", str(path), "--to", "helm"])
    assert result.exit_code == 2
