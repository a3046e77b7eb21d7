"""`podctl run` with Kubernetes YAML: a manifest set runs as a stack on the engine.

The set is what a small app ships with: a Namespace (the stack's name), a
ConfigMap and a Secret mounted as directories of keys, a PVC, a Deployment
with probes, a NodePort Service, and an Ingress that has no meaning on one
host and must be reported, not dropped silently.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, free_port, wait_for, write_stack

pytestmark = pytest.mark.docker

SECRET = "s3cret-kube-value"
NEW_SECRET = "rotated-kube-value"


def manifests(stack: str, node_port: int, page: str, secret: str) -> str:
    encoded = base64.b64encode(secret.encode()).decode()
    return f"""\
        apiVersion: v1
        kind: Namespace
        metadata: {{name: {stack}}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: site, namespace: {stack}}}
        data:
          index.html: "{page}"
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: db, namespace: {stack}}}
        type: Opaque
        data:
          password: {encoded}
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {{name: data, namespace: {stack}}}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {{requests: {{storage: 1Gi}}}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: {stack}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              terminationGracePeriodSeconds: 2
              containers:
              - name: web
                image: busybox:1.36
                command: [httpd, -f, -p, "8080", -h, /www]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /, port: http}}
                  periodSeconds: 1
                livenessProbe:
                  tcpSocket: {{port: 8080}}
                  periodSeconds: 2
                volumeMounts:
                - {{name: site, mountPath: /www}}
                - {{name: db, mountPath: /etc/db, readOnly: true}}
                - {{name: data, mountPath: /data}}
              volumes:
              - name: site
                configMap: {{name: site}}
              - name: db
                secret: {{secretName: db, defaultMode: 0400}}
              - name: data
                persistentVolumeClaim: {{claimName: data}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web, namespace: {stack}}}
        spec:
          type: NodePort
          selector: {{app: web}}
          ports: [{{port: 80, targetPort: http, nodePort: {node_port}}}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {{name: web, namespace: {stack}}}
        spec:
          rules:
          - http:
              paths:
              - path: /
                pathType: Prefix
                backend: {{service: {{name: web, port: {{number: 80}}}}}}
        """


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return str(r.read().decode())


def running_containers(stack: str) -> list[str]:
    return docker(
        "ps", "-q", "--filter", f"label=io.podctl.stack={stack}", "--filter", "status=running"
    ).split()


def test_manifest_set_runs_with_secret_as_file_and_ingress_reported(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    node_port = free_port()
    app = write_stack(tmp_path, manifests(stack_name, node_port, "hello kube", SECRET), "app.yaml")
    pc.start(app, extra=())  # watching: an edit of the manifest is applied
    pc.wait_ready(stack_name, 2, timeout=60)

    # Traffic through 127.0.0.1:nodePort reaches the ready replicas.
    assert wait_for("the page on the nodePort", lambda: get(node_port) == "hello kube", 20)

    # The fidelity report was printed at start: the Ingress is named, with its place.
    log = pc.output()
    assert "did not carry over exactly" in log
    assert f"{app}:" in log and "Ingress/web: not carried over (no ingress controller" in log

    # The secret is a file (mode 0400) and nowhere in the container's environment.
    cid = running_containers(stack_name)[0]
    assert docker("exec", cid, "cat", "/etc/db/password") == SECRET
    assert docker("exec", cid, "stat", "-c", "%a", "/etc/db/password") == "400"
    inspected = json.loads(docker("inspect", cid))[0]
    env = inspected["Config"]["Env"] or []
    assert not any(SECRET in e for e in env), env
    assert not any(e.startswith("PODCTL_K8S_SECRET_") for e in env), env
    # The PVC is a named volume of the stack, mounted at /data.
    mounts = {m["Destination"]: m for m in inspected["Mounts"]}
    assert mounts["/data"]["Type"] == "volume"
    assert mounts["/data"]["Name"] == f"{stack_name}_data"
    # ... and the secret never reached podctl's own output.
    assert SECRET not in log

    # Hot reload: a new page and a rotated Secret roll the pod; the new replicas
    # mount the new value (read from the reloaded file, in memory only).
    app.write_text(
        write_stack(
            tmp_path, manifests(stack_name, node_port, "hello again", NEW_SECRET), "next.yaml"
        ).read_text()
    )
    wait_for("the new page", lambda: get(node_port) == "hello again", 90)

    def rotated() -> bool:
        ids = running_containers(stack_name)
        values = {docker("exec", c, "cat", "/etc/db/password", check=False) for c in ids}
        return values == {NEW_SECRET}

    wait_for("every replica to mount the rotated secret", rotated, 90)
    assert NEW_SECRET not in pc.output()
    assert pc.stop() == 0
    docker("volume", "rm", "-f", f"{stack_name}_data", check=False)
