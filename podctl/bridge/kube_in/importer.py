"""The importer: files in, objects grouped into stacks, each kind to its concept
module (configs, services, workloads with their probes and volumes), and
whatever has no podctl meaning into the report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from podctl.bridge.kube_in.configs import ConfigImport
from podctl.bridge.kube_in.objects import (
    ImportedStack,
    ImportResult,
    KubeObject,
    is_kubernetes_object,
)
from podctl.bridge.kube_in.services import ServiceImport
from podctl.bridge.kube_in.workloads import WorkloadImport
from podctl.spec import schema

if TYPE_CHECKING:
    from podctl.bridge.kyaml import YamlDocument

WORKLOADS = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
)
APPS_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
CORE_KINDS = frozenset(
    {
        "Pod",
        "ReplicationController",
        "Service",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Namespace",
    }
)
# apiVersions removed from Kubernetes whose objects still read the same for our purpose.
_OLD_APPS = {
    "extensions/v1beta1": "1.16",
    "apps/v1beta1": "1.16",
    "apps/v1beta2": "1.16",
}

# Why a kind is not carried over, for the kinds people meet most.
_KIND_REASONS = {
    "Ingress": "no ingress controller on one host: publish with a NodePort or LoadBalancer Service",
    "IngressClass": "no ingress controller on one host",
    "HorizontalPodAutoscaler": "no autoscaling: replicas are fixed",
    "VerticalPodAutoscaler": "no autoscaling",
    "PodDisruptionBudget": "no node drains on one host",
    "ServiceAccount": "no Kubernetes API on one host",
    "Role": "no Kubernetes API on one host",
    "RoleBinding": "no Kubernetes API on one host",
    "ClusterRole": "no Kubernetes API on one host",
    "ClusterRoleBinding": "no Kubernetes API on one host",
    "NetworkPolicy": "every pod of a stack shares one network",
    "Job": "run-to-completion workloads are not supported yet",
    "CronJob": "scheduled workloads are not supported yet",
    "PersistentVolume": "volumes are Docker volumes on this host",
    "StorageClass": "volumes are Docker volumes on this host",
    "LimitRange": "no admission on one host",
    "ResourceQuota": "no admission on one host",
    "CustomResourceDefinition": "no Kubernetes API on one host",
    "Endpoints": "podctl tracks endpoints from readiness itself",
    "EndpointSlice": "podctl tracks endpoints from readiness itself",
}


class Importer(WorkloadImport, ServiceImport, ConfigImport):
    """Builds stacks from the objects of one or more files."""

    def __init__(self) -> None:
        super().__init__()
        self._stacks: dict[str, ImportedStack] = {}

    def add_file(
        self, display: str, source: str, docs: list[YamlDocument], default_stack: str
    ) -> None:
        """Collect the objects of one file; call `finish` after the last file."""
        objects: list[KubeObject] = []
        for doc in docs:
            for path, dup in ((p, p[-1]) for p in doc.duplicates):
                self.fail_doc(display, doc, path, f"duplicate key `{dup}`")
            data = doc.data
            if data is None:
                continue  # an empty document (`---` twice, or a trailing one)
            if not isinstance(data, dict):
                self.fail_doc(display, doc, (), "a Kubernetes document must be a mapping")
                continue
            for key in ("apiVersion", "kind"):
                if key in data and not isinstance(data[key], str):
                    self.fail_doc(display, doc, (key,), f"`{key}` must be a string")
                    data = None
                    break
            if data is None:
                continue
            if not is_kubernetes_object(data):
                missing = "apiVersion" if "apiVersion" not in data else "kind"
                self.fail_doc(display, doc, (), f"not a Kubernetes object: missing `{missing}`")
                continue
            kind = data.get("kind")
            items = data.get("items")
            if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
                for i, item in enumerate(items):
                    if is_kubernetes_object(item):
                        objects.append(KubeObject(display, doc, ("items", i), item))
                    else:
                        self.fail_doc(display, doc, ("items", i), "not a Kubernetes object")
                continue
            objects.append(KubeObject(display, doc, (), data))

        namespaces = [
            o for o in objects if o.kind == "Namespace" and o.api_version == "v1" and o.name
        ]
        default = namespaces[0].name if len(namespaces) == 1 else default_stack
        for obj in objects:
            if not obj.name:
                self.fail(obj, ("metadata",), "missing `metadata.name`")
                continue
            name = obj.name if obj.kind == "Namespace" else obj.namespace or default
            stack = self._stacks.get(name)
            if stack is None:
                stack = ImportedStack(name, display, source)
                self._stacks[name] = stack
            stack.objects.append(obj)

    def finish(self) -> ImportResult:
        for stack in self._stacks.values():
            self._build(stack)
            self.result.stacks.append(stack)
        return self.result

    # -- one stack ---------------------------------------------------------------

    def _build(self, st: ImportedStack) -> None:
        ordered: list[tuple[int, KubeObject]] = []
        rank = {"Namespace": 0, "ConfigMap": 1, "Secret": 1, "PersistentVolumeClaim": 1}
        for obj in st.objects:
            if not self._supported(obj):
                continue
            ordered.append((rank.get(obj.kind, 2 if obj.kind in WORKLOADS else 3), obj))
        ordered.sort(key=lambda x: x[0])
        for _, obj in ordered:
            handler = {
                "Namespace": self._namespace,
                "ConfigMap": self._config_map,
                "Secret": self._secret,
                "PersistentVolumeClaim": self._claim,
                "Service": self._service,
            }.get(obj.kind, self._workload)
            handler(st, obj)
        data: dict[str, Any] = {
            "name": st.name,
            "pods": st.pods,
            "services": st.services,
            "configs": st.configs,
            "secrets": st.secrets,
            "volumes": st.volumes,
        }
        if st.history:
            # One limit per stack: the largest asked for, so no workload keeps fewer.
            limit = max(n for n, _ in st.history)
            data["history"] = limit
            for n, obj in st.history:
                if n != limit:
                    self.note(
                        obj,
                        ("spec", "revisionHistoryLimit"),
                        "approximated",
                        f"podctl keeps revisions per stack: {limit}, the largest in it",
                    )
        try:
            st.stack = msgspec.convert(data, schema.StackFile)
        except msgspec.ValidationError as exc:
            # Every value was checked on the way in; this is a bug, shown as a clean error.
            first = st.objects[0]
            self.fail(first, (), f"cannot build the stack: {exc}")

    def _supported(self, obj: KubeObject) -> bool:
        kind, api = obj.kind, obj.api_version
        if kind in APPS_KINDS:
            if api == "apps/v1":
                return True
            if api in _OLD_APPS:
                self.note(
                    obj,
                    ("apiVersion",),
                    "approximated",
                    f"{api} was removed in Kubernetes {_OLD_APPS[api]}; read as apps/v1",
                )
                return True
        elif kind in CORE_KINDS:
            if api == "v1":
                return True
        else:
            reason = _KIND_REASONS.get(kind, f"podctl has no equivalent of a {kind}")
            self.note(obj, (), "not carried over", reason)
            return False
        self.note(obj, ("apiVersion",), "not carried over", f"unknown apiVersion {api} for {kind}")
        return False

    def _namespace(self, st: ImportedStack, obj: KubeObject) -> None:
        self.rest(obj, (), obj.body, {"apiVersion", "kind", "metadata", "status"})

    # -- configs, secrets, volumes -------------------------------------------------
