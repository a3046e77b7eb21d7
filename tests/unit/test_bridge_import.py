"""Kubernetes YAML in, rendered stack out: one golden test per mapping."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from podctl.bridge import is_kubernetes, load, render_stack
from podctl.bridge.inputs import LoadedInputs


def kube(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def imported(tmp_path: Path, text: str, name: str = "app.yaml") -> LoadedInputs:
    loaded = load([kube(tmp_path, text, name)], environ={}, port_start=1024)
    assert not loaded.issues, [str(i) for i in loaded.issues]
    return loaded


def rendered(loaded: LoadedInputs) -> list[dict[str, Any]]:
    return [render_stack(s, loaded.secret_sources.get(s.name)) for s in loaded.stacks]


def _budget(pod: dict[str, Any]) -> dict[str, Any]:
    """The rolling-update budget of a rendered pod (its other `rollout` fields: defaults)."""
    return {k: pod["rollout"][k] for k in ("max_surge", "max_unavailable")}


def report(loaded: LoadedInputs) -> list[str]:
    return [f"{e.document} {e.path}: {e.verdict} ({e.reason})" for e in loaded.report]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: busybox:1.36
        command: [httpd]
        args: [-f, -p, "8080"]
        workingDir: /srv
        env:
        - {name: MODE, value: prod}
        ports: [{name: http, containerPort: 8080}, {containerPort: 9090}]
        resources: {limits: {cpu: 250m, memory: 64Mi}}
        readinessProbe:
          httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-A, value: b}]}
          periodSeconds: 2
          failureThreshold: 5
        livenessProbe: {tcpSocket: {port: 8080}, initialDelaySeconds: 3}
        startupProbe: {exec: {command: [cat, /tmp/ok]}, timeoutSeconds: 2}
        securityContext:
          runAsUser: 1000
          runAsGroup: 2000
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
"""


def test_kubernetes_yaml_is_detected_by_api_version_and_kind(tmp_path: Path) -> None:
    assert is_kubernetes(kube(tmp_path, DEPLOYMENT))
    stack = tmp_path / "stack.yaml"
    stack.write_text("name: x\npods: {}\n")
    assert not is_kubernetes(stack)


def test_deployment_becomes_a_pod(tmp_path: Path) -> None:
    (stack,) = rendered(imported(tmp_path, DEPLOYMENT))
    assert stack["name"] == "app"  # the file's stem: no Namespace, no metadata.namespace
    (pod,) = stack["pods"]
    assert pod["name"] == "web"
    assert pod["replicas"] == 3
    assert _budget(pod) == {"max_surge": 1, "max_unavailable": 0}
    assert pod["image"] == "busybox:1.36"
    # The kubelet's rule: command replaces the entrypoint, args the image's command.
    assert pod["entrypoint"] == ["httpd"]
    assert pod["command"] == ["-f", "-p", "8080"]
    assert pod["workdir"] == "/srv"
    assert pod["env"] == {"MODE": "prod"}
    assert pod["ports"] == {"http": 8080, "port-9090": 9090}
    assert (pod["nano_cpus"], pod["memory_bytes"]) == (250_000_000, 64 * 2**20)
    assert pod["readiness"] == {
        "check": {
            "type": "http",
            "port": 8080,
            "path": "/healthz",
            "scheme": "http",
            "headers": [["X-A", "b"]],
        },
        "initial_delay_s": 0.0,
        "period_s": 2.0,
        "timeout_s": 1.0,
        "success_threshold": 1,
        "failure_threshold": 5,
    }
    assert pod["liveness"]["check"] == {"type": "tcp", "port": 8080}
    assert pod["liveness"]["initial_delay_s"] == 3.0
    assert pod["startup"]["check"] == {"type": "exec", "command": ["cat", "/tmp/ok"]}
    assert pod["startup"]["timeout_s"] == 2.0
    assert pod["user"] == "1000:2000"
    assert pod["read_only_rootfs"] is True
    assert pod["cap_drop"] == ["ALL"]
    assert pod["stop_grace_s"] == 5.0
    assert pod["labels"] == {"app": "web"}
    assert len(pod["revision"]) == 12


def test_defaults_follow_kubernetes(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: busybox}]}
        """,
    )
    (pod,) = rendered(loaded)[0]["pods"]
    assert pod["replicas"] == 1
    assert _budget(pod) == {"max_surge": "25%", "max_unavailable": "25%"}
    assert pod["stop_grace_s"] == 30.0
    assert report(loaded) == []


def test_revision_is_the_one_a_stack_file_gets(tmp_path: Path) -> None:
    """The same pod written as a stack file and as a Deployment: one revision."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        "name: app\npods:\n  web:\n    image: busybox:1.36\n    command: [sleep, '9']\n"
        "    replicas: 2\n    stop_grace: 30s\n    labels: {app: web}\n"
        "    rollout: {max_surge: 25%, max_unavailable: 25%}\n"
    )
    manifest = kube(
        tmp_path,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 2
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: "busybox:1.36", args: [sleep, "9"]}]}
        """,
        "k8s.yaml",
    )
    a = load([stack], environ={})
    b = load([manifest], environ={})
    assert a.stacks[0].pods[0].revision == b.stacks[0].pods[0].revision
    assert a.stacks[0].pods[0].template == b.stacks[0].pods[0].template


def test_namespace_names_the_stack(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: one}
        spec: {containers: [{name: a, image: busybox}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: two, namespace: other}
        spec: {containers: [{name: a, image: busybox}], restartPolicy: OnFailure}
        """,
    )
    stacks = {s["name"]: s for s in rendered(loaded)}
    assert set(stacks) == {"shop", "other"}
    assert [(p["name"], p["replicas"], p["restart"]) for p in stacks["shop"]["pods"]] == [
        ("one", 1, "always")
    ]
    assert stacks["other"]["pods"][0]["restart"] == "on-failure"


def test_daemonset_runs_one_replica_and_statefulset_gets_its_claims(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: agent}
        spec:
          selector: {matchLabels: {app: agent}}
          template:
            metadata: {labels: {app: agent}}
            spec: {containers: [{name: a, image: busybox}]}
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db}
        spec:
          serviceName: db
          replicas: 2
          podManagementPolicy: Parallel
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec:
              containers:
              - {name: db, image: busybox, volumeMounts: [{name: data, mountPath: /data}]}
          volumeClaimTemplates:
          - metadata: {name: data}
            spec: {accessModes: [ReadWriteOnce]}
        """,
    )
    (stack,) = rendered(loaded)
    pods = {p["name"]: p for p in stack["pods"]}
    assert pods["agent"]["replicas"] == 1
    assert _budget(pods["agent"]) == {"max_surge": 0, "max_unavailable": 1}
    assert pods["db"]["replicas"] == 2
    assert [(m["kind"], m["source"], m["target"]) for m in pods["db"]["mounts"]] == [
        ("volume", "data-db", "/data")
    ]
    assert [v["name"] for v in stack["volumes"]] == ["data-db"]
    assert report(loaded) == [
        "StatefulSet/db spec.serviceName: ignored (no per-replica DNS names on one host)",
        "StatefulSet/db spec.volumeClaimTemplates[0]: approximated (one volume shared by all "
        "replicas (podctl has no per-replica volumes yet))",
    ]


SERVICES = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers: [{name: web, image: busybox, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-node}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {tier: front}
  ports: [{port: 18080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"""


def test_replication_controller_is_a_pod_that_rolls(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: v1
        kind: ReplicationController
        metadata: {name: redis}
        spec:
          replicas: 2
          selector: {app: redis}
          template:
            metadata: {labels: {app: redis}}
            spec: {containers: [{name: r, image: redis:7, ports: [{containerPort: 6379}]}]}
        """,
    )
    (pod,) = rendered(loaded)[0]["pods"]
    assert (pod["name"], pod["replicas"], pod["image"]) == ("redis", 2, "redis:7")
    assert report(loaded) == [
        "ReplicationController/redis spec.template: approximated (a template change rolls "
        "the pods (a bare ReplicationController leaves running pods as they are))"
    ]


def test_rollout_timing_and_history_carry_over(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          minReadySeconds: 5
          progressDeadlineSeconds: 120
          revisionHistoryLimit: 4
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: w, image: busybox}]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: db}
        spec:
          strategy: {type: Recreate}
          revisionHistoryLimit: 2
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec: {containers: [{name: d, image: busybox}]}
        """,
    )
    pods = {p["name"]: p for p in rendered(loaded)[0]["pods"]}
    web, db = pods["web"]["rollout"], pods["db"]["rollout"]
    assert (web["min_ready_s"], web["progress_deadline_s"], web["auto_rollback"]) == (
        5.0,
        120.0,
        False,
    )
    assert db["strategy"] == "recreate"
    assert loaded.stacks[0].history == 4
    assert report(loaded) == [
        "Deployment/db spec.revisionHistoryLimit: approximated "
        "(podctl keeps revisions per stack: 4, the largest in it)"
    ]


def test_services_by_type(tmp_path: Path) -> None:
    loaded = imported(tmp_path, SERVICES)
    services = {
        s["name"]: (s["pod"], s["target_port"], s["port"]) for s in rendered(loaded)[0]["services"]
    }
    assert services == {
        "web": ("web", 8080, None),  # ClusterIP: in the stack only
        "web-node": ("web", 8080, 30080),  # NodePort: 127.0.0.1:nodePort
        "web-lb": ("web", 8080, 18080),  # LoadBalancer: 127.0.0.1:port
        "web-headless": ("web", 8080, None),
    }
    assert report(loaded) == [
        "Service/web-node spec.ports[0].port: approximated "
        "(in the stack it answers at web-node:30080, not web-node:80)",
        "Service/web-headless spec.clusterIP: approximated (headless: the name reaches ready "
        "replicas through podctl's proxy, not each pod's address)",
    ]


CONFIG_AND_SECRET = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: site}
data: {index.html: "<h1>hi</h1>", MODE: prod}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
data: {password: c2VjcmV0cGFzcw==}
stringData: {user: admin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox
        envFrom: [{configMapRef: {name: site}, prefix: CFG_}]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
        volumeMounts:
        - {name: site, mountPath: /www}
        - {name: creds, mountPath: /run/creds}
        - {name: one, mountPath: /etc/user, subPath: user}
      volumes:
      - {name: site, configMap: {name: site, items: [{key: index.html, path: index.html}]}}
      - {name: creds, secret: {secretName: db, defaultMode: 0400}}
      - {name: one, secret: {secretName: db}}
"""


def test_configmaps_and_secrets(tmp_path: Path) -> None:
    loaded = imported(tmp_path, CONFIG_AND_SECRET)
    (stack,) = rendered(loaded)
    (pod,) = stack["pods"]
    assert [(c["name"], c["data"]) for c in stack["configs"]] == [
        ("site.index.html", "<h1>hi</h1>"),
        ("site.MODE", "prod"),
    ]
    assert stack["secrets"] == [
        {"name": "db.password", "source": "Secret/db key password", "value": "<redacted>"},
        {"name": "db.user", "source": "Secret/db key user", "value": "<redacted>"},
    ]
    # envFrom and valueFrom are explicit env opt-ins: references, never values.
    assert pod["env"] == {}
    assert pod["env_from"] == [
        {"name": "CFG_MODE", "kind": "config", "source": "site.MODE"},
        {"name": "CFG_index.html", "kind": "config", "source": "site.index.html"},
        {"name": "PASSWORD", "kind": "secret", "source": "db.password"},
    ]
    mounts = [(m["kind"], m["source"], m["target"], oct(m["mode"])) for m in pod["mounts"]]
    assert mounts == [
        ("config", "site.index.html", "/www/index.html", "0o644"),
        ("secret", "db.password", "/run/creds/password", "0o400"),
        ("secret", "db.user", "/run/creds/user", "0o400"),
        ("secret", "db.user", "/etc/user", "0o644"),
    ]
    assert "c2VjcmV0cGFzcw" not in str(stack) and "secretpass" not in str(stack)
    assert "secretpass" not in str(report(loaded))


def test_secret_value_changes_the_revision(tmp_path: Path) -> None:
    a = imported(tmp_path, CONFIG_AND_SECRET, "a.yaml")
    b = imported(tmp_path, CONFIG_AND_SECRET.replace("c2VjcmV0cGFzcw==", "b3RoZXI="), "b.yaml")
    assert a.stacks[0].pods[0].revision != b.stacks[0].pods[0].revision


def test_pvc_is_a_named_volume(tmp_path: Path) -> None:
    loaded = imported(
        tmp_path,
        """\
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: data}
        spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: db}
        spec:
          containers: [{name: db, image: busybox, volumeMounts: [{name: d, mountPath: /d}]}]
          volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
        """,
    )
    (stack,) = rendered(loaded)
    assert [(v["name"], v["docker_name"]) for v in stack["volumes"]] == [("data", "app_data")]
    assert stack["pods"][0]["mounts"][0]["source"] == "data"


def test_kubernetes_yaml_is_never_a_traceback(tmp_path: Path) -> None:
    cases = [
        "",
        "---\n---\n",
        "- 1\n",
        "apiVersion: v1\n",
        "apiVersion: v1\nkind: 5\n",
        "apiVersion: v1\nkind: Pod\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: [1]\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: x}\n",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: '!!'}\n",
        "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod}, 3]\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: 3, selector: {a: b}}\n",
    ]
    for i, text in enumerate(cases):
        path = tmp_path / f"case{i}.yaml"
        path.write_text(text)
        loaded = load([path], environ={})
        for issue in loaded.issues:
            assert issue.file == str(path) and issue.line >= 1 and issue.column >= 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: x\n"
            "  template: {spec: {containers: [{name: a, image: b}]}}\n",
            "5:13: Deployment/d spec.replicas: expected an integer, got a string",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
            "  containers: [{name: a, image: b, readinessProbe: {tcpSocket: {port: web}}}]\n",
            "5:36: Deployment/p",
        ),
    ],
)
def test_errors_point_into_the_manifest(tmp_path: Path, text: str, expected: str) -> None:
    path = kube(tmp_path, text)
    loaded = load([path], environ={})
    (issue,) = loaded.issues
    if expected.startswith("5:36"):
        # A normalisation error maps back to the Kubernetes field it came from.
        assert (issue.line, issue.column) == (5, 36)
        assert issue.field == "Pod/p spec.containers[0].readinessProbe"
        assert "no port named `web`" in issue.message
    else:
        assert str(issue) == f"{path}:{expected}"
