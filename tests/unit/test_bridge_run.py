"""`bridge.inputs.load_stacks`: what `podctl run` loads (stack files or Kubernetes YAML)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from podctl.bridge.inputs import load_stacks
from podctl.spec import SpecError

MANIFEST = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
stringData: {password: hunter2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {disk: ssd}
      containers:
      - name: web
        image: busybox:1.36
        volumeMounts: [{name: db, mountPath: /etc/db}]
      volumes: [{name: db, secret: {secretName: db}}]
"""


def test_kubernetes_secrets_join_the_environ_and_the_report_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(MANIFEST)
    environ: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="podctl.bridge"):
        stacks = load_stacks([path], {}, environ, port_start=1024)
    assert [s.name for s in stacks] == ["shop"]
    (secret,) = stacks[0].secrets
    assert secret.env is not None and environ[secret.env] == "hunter2"
    text = caplog.text
    assert "Deployment/web spec.template.spec.nodeSelector: ignored (one host)" in text
    assert "hunter2" not in text


def test_stack_files_load_as_before_and_errors_raise(tmp_path: Path) -> None:
    good = tmp_path / "stack.yaml"
    good.write_text("name: s\npods: {web: {image: busybox:1.36}}\n")
    environ = {"HOME": "/root"}
    assert [s.name for s in load_stacks([good], {}, environ, port_start=1024)] == ["s"]
    assert environ == {"HOME": "/root"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec: {replicas: many, template: {spec: {containers: [{image: x}]}}}
            """
        )
    )
    with pytest.raises(SpecError) as exc:
        load_stacks([bad], {}, {}, port_start=1024)
    assert "bad.yaml:4:" in str(exc.value.issues[0])
