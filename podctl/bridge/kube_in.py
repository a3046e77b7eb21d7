"""Kubernetes manifests -> podctl `StackFile`s, plus a fidelity report.

The output is the very Struct a YAML stack file decodes to, so the normal
normalisation path (`podctl.spec.normalise`) turns it into a `DesiredStack` and
revisions are computed exactly as for a stack file. What has no podctl
equivalent is never guessed at: it goes into the report, with its document and
field path. Input that is wrong as Kubernetes (a Deployment without containers,
`replicas: abc`) becomes a located `SpecIssue` instead.

Mapping rules worth knowing (each follows what the kubelet or a controller does):
- `command` is Docker's entrypoint and `args` its command, as in the kubelet.
- A ConfigMap or Secret becomes one config/secret per key, named `<map>.<key>`
  (just `<map>` when the only key carries the map's own name, as `podctl export`
  writes them). A `configMap`/`secret` volume mounts one file per key.
- Secret values never become files or log lines: they are handed to
  normalisation as environment variables (`secrets.<x>.env`) kept in memory.
- Probes, rollouts and grace periods take Kubernetes' defaults when absent
  (maxSurge/maxUnavailable 25%, terminationGracePeriodSeconds 30).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
import re
from typing import TYPE_CHECKING, Any

import msgspec

from podctl import labels as podctl_labels
from podctl.bridge.report import FidelityEntry, Verdict
from podctl.spec import schema
from podctl.spec.errors import FieldPath, SpecIssue, render_path
from podctl.spec.units import parse_cpus, parse_size

if TYPE_CHECKING:
    from podctl.bridge.kyaml import YamlDocument

# Annotations `podctl export` writes and import reads back.
ANNOTATION_DEPENDS_ON = "podctl.io/depends-on"
ANNOTATION_SECRET_SOURCE = "podctl.io/secret-source"
# Secret values are handed to normalisation through environment variables with this prefix.
SECRET_ENV_PREFIX = "PODCTL_K8S_SECRET_"

K8S_GRACE_S = 30  # terminationGracePeriodSeconds default
K8S_VOLUME_MODE = 0o644  # defaultMode of configMap and secret volumes

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")
APPS_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
CORE_KINDS = frozenset(
    {"Pod", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "Namespace"}
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

_ONE_HOST = "one host"
_NO_API = "no Kubernetes API on one host"
# Pod spec fields with no podctl meaning, and why.
_POD_SPEC_REASONS = {
    "nodeSelector": _ONE_HOST,
    "nodeName": _ONE_HOST,
    "affinity": _ONE_HOST,
    "tolerations": _ONE_HOST,
    "topologySpreadConstraints": _ONE_HOST,
    "priorityClassName": _ONE_HOST,
    "priority": _ONE_HOST,
    "schedulerName": _ONE_HOST,
    "runtimeClassName": "one container runtime",
    "serviceAccountName": _NO_API,
    "serviceAccount": _NO_API,
    "automountServiceAccountToken": _NO_API,
    "imagePullSecrets": "pulls use the Docker credentials of this host",
    "enableServiceLinks": "services are found by name, not by environment variables",
    "hostNetwork": "not supported",
    "hostPID": "not supported",
    "hostIPC": "not supported",
    "shareProcessNamespace": "one container per pod",
    "dnsPolicy": "in-stack names are served by podctl",
    "dnsConfig": "in-stack names are served by podctl",
    "hostAliases": "not supported yet",
    "hostname": "each replica is named by podctl",
    "subdomain": "each replica is named by podctl",
    "activeDeadlineSeconds": "not supported",
    "readinessGates": "readiness comes from the probe",
    "overhead": "no admission on one host",
    "preemptionPolicy": _ONE_HOST,
    "setHostnameAsFQDN": "each replica is named by podctl",
    "os": _ONE_HOST,
    "ephemeralContainers": "one container per pod",
}
# Values that are the Kubernetes defaults (as `kubectl get -o yaml` fills them in): nothing lost.
_POD_SPEC_DEFAULTS: dict[str, Any] = {
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "enableServiceLinks": True,
    "securityContext": {},
    "hostNetwork": False,
    "hostPID": False,
    "hostIPC": False,
}
_CONTAINER_REASONS = {
    "lifecycle": "postStart/preStop hooks are not supported yet",
    "stdin": "not supported",
    "stdinOnce": "not supported",
    "tty": "not supported",
    "terminationMessagePath": "not supported",
    "terminationMessagePolicy": "not supported",
    "imagePullPolicy": "images are pulled when missing",
    "resizePolicy": "not supported",
    "restartPolicy": "one container per pod",
    "volumeDevices": "not supported",
}
_CONTAINER_DEFAULTS: dict[str, Any] = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": "IfNotPresent",
    "stdin": False,
    "tty": False,
}

_DNS_LABEL_BAD = re.compile(r"[^a-z0-9-]+")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
# `$(VAR)`: the kubelet expands it in command, args and env values when VAR is defined.
_VAR_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class KubeObject:
    """One Kubernetes object from a file (a document, or an item of a `List`)."""

    __slots__ = ("api_version", "base", "body", "doc", "file", "kind", "name", "namespace")

    def __init__(self, file: str, doc: YamlDocument, base: FieldPath, body: dict[str, Any]) -> None:
        self.file = file
        self.doc = doc
        self.base = base
        self.body = body
        self.kind = str(body.get("kind"))
        self.api_version = str(body.get("apiVersion"))
        meta = body.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name")
        self.name = name if isinstance(name, str) else ""
        namespace = meta.get("namespace")
        self.namespace = namespace if isinstance(namespace, str) and namespace else None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}" if self.name else self.kind

    def at(self, path: FieldPath) -> tuple[int, int]:
        return self.doc.locator.find((*self.base, *path))

    def key_at(self, path: FieldPath) -> tuple[int, int]:
        return self.doc.locator.find_key((*self.base, *path))


Origin = tuple[KubeObject, FieldPath]


class ImportedStack:
    """One stack built from Kubernetes objects, before normalisation."""

    def __init__(self, name: str, file: str, source: str) -> None:
        self.name = name
        self.file = file  # display path of the first file that contributed
        self.source = source  # its absolute path (relative paths resolve against it)
        self.stack: schema.StackFile | None = None
        self.origins: dict[FieldPath, Origin] = {}
        self.secret_env: dict[str, str] = {}  # env var -> secret value (memory only)
        self.secret_sources: dict[str, str] = {}  # secret name -> "Secret/x key y"
        # Plain data, converted to a StackFile at the end.
        self.pods: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        # Kubernetes objects by name, for references.
        self.config_maps: dict[str, dict[str, str]] = {}  # map -> key -> config name
        self.k8s_secrets: dict[str, dict[str, str]] = {}  # secret -> key -> secret name
        self.claims: set[str] = set()
        self.pod_labels: dict[str, dict[str, str]] = {}  # pod -> template labels
        self.objects: list[KubeObject] = []

    def origin(self, path: FieldPath, obj: KubeObject, k8s_path: FieldPath) -> None:
        self.origins.setdefault(path, (obj, k8s_path))

    def locate(self, path: FieldPath) -> Origin | None:
        """The Kubernetes field a stack-file path came from (or its nearest ancestor)."""
        p = tuple(path)
        while p:
            if p in self.origins:
                return self.origins[p]
            p = p[:-1]
        return None


class ImportResult:
    def __init__(self) -> None:
        self.stacks: list[ImportedStack] = []
        self.report: list[FidelityEntry] = []
        self.issues: list[SpecIssue] = []


def stack_name_from_stem(stem: str) -> str:
    """A file stem as a stack name: lowercase, `-` for anything else, at most 63 characters."""
    name = _DNS_LABEL_BAD.sub("-", stem.lower()).strip("-")[:63].strip("-")
    return name or "default"


def is_kubernetes_object(data: Any) -> bool:
    return isinstance(data, dict) and "apiVersion" in data and "kind" in data


def config_name(map_name: str, key: str, keys: int) -> str:
    """The podctl config/secret name of one key of a ConfigMap/Secret."""
    return map_name if keys == 1 and key == map_name else f"{map_name}.{key}"


def _secret_env_var(secret: str, key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", f"{secret}_{key}").upper().strip("_")[:60]
    digest = hashlib.sha256(f"{secret}\0{key}".encode()).hexdigest()[:8]
    return f"{SECRET_ENV_PREFIX}{stem}_{digest}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Importer:
    """Builds stacks from the objects of one or more files."""

    def __init__(self) -> None:
        self.result = ImportResult()
        self._stacks: dict[str, ImportedStack] = {}

    # -- reporting -------------------------------------------------------------

    def note(self, obj: KubeObject, path: FieldPath, verdict: Verdict, reason: str) -> None:
        line, col = obj.key_at(path) if path else obj.at(())
        self.result.report.append(
            FidelityEntry(
                file=obj.file,
                line=line,
                column=col,
                document=obj.ref,
                path=render_path(path) if path else "",
                verdict=verdict,
                reason=reason,
            )
        )

    def fail(self, obj: KubeObject, path: FieldPath, message: str) -> None:
        line, col = obj.at(path)
        field = f"{obj.ref} {render_path(path)}" if path else obj.ref
        self.result.issues.append(
            SpecIssue(file=obj.file, line=line, column=col, field=field, message=message)
        )

    def fail_doc(self, file: str, doc: YamlDocument, path: FieldPath, message: str) -> None:
        line, col = doc.locator.find(path)
        self.result.issues.append(
            SpecIssue(file=file, line=line, column=col, field="", message=message)
        )

    def rest(
        self,
        obj: KubeObject,
        path: FieldPath,
        mapping: dict[str, Any],
        handled: set[str] | frozenset[str],
        reasons: dict[str, str] | None = None,
        defaults: dict[str, Any] | None = None,
        verdict: Verdict = "ignored",
    ) -> None:
        """Report every key of `mapping` that is not handled (and not at its default)."""
        for key, value in mapping.items():
            if key in handled:
                continue
            if defaults is not None and key in defaults and defaults[key] == value:
                continue
            if value is None or value == {} or value == []:
                continue
            reason = (reasons or {}).get(key, "not supported")
            self.note(obj, (*path, key), verdict, reason)

    # -- typed access ----------------------------------------------------------

    def get(self, obj: KubeObject, path: FieldPath) -> Any:
        value: Any = obj.body
        for part in path:
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return None
                value = value[part]
            elif not isinstance(value, dict):
                return None
            else:
                value = value.get(part)
        return value

    def mapping(self, obj: KubeObject, path: FieldPath) -> dict[str, Any]:
        value = self.get(obj, path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(obj, path, f"expected a mapping, got {_type_name(value)}")
            return {}
        return value

    def seq(self, obj: KubeObject, path: FieldPath) -> list[Any]:
        value = self.get(obj, path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(obj, path, f"expected a list, got {_type_name(value)}")
            return []
        return value

    def integer(self, obj: KubeObject, path: FieldPath, *, minimum: int = 0) -> int | None:
        value = self.get(obj, path)
        if value is None:
            return None
        if not _is_int(value):
            self.fail(obj, path, f"expected an integer, got {_type_name(value)}")
            return None
        if value < minimum:
            self.fail(obj, path, f"must be {minimum} or more, got {value}")
            return None
        return int(value)

    def text(self, obj: KubeObject, path: FieldPath, *, required: bool = False) -> str | None:
        value = self.get(obj, path)
        if value is None:
            if required:
                self.fail(obj, path[:-1], f"missing required field `{path[-1]}`")
            return None
        if not isinstance(value, str):
            self.fail(obj, path, f"expected a string, got {_type_name(value)}")
            return None
        return value

    def strings(self, obj: KubeObject, path: FieldPath) -> list[str] | None:
        value = self.get(obj, path)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(obj, path, f"expected a list of strings, got {_type_name(value)}")
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(str(item))  # what the API server's JSON would have refused; kind
            else:
                self.fail(obj, (*path, i), f"expected a string, got {_type_name(item)}")
        return out

    # -- input -------------------------------------------------------------------

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

    def _config_map(self, st: ImportedStack, obj: KubeObject) -> None:
        data = self.mapping(obj, ("data",))
        keys: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(value, str):
                self.fail(obj, ("data", key), f"expected a string, got {_type_name(value)}")
                continue
            name = config_name(obj.name, key, len(data))
            keys[key] = name
            if name in st.configs:
                self.note(obj, ("data", key), "not carried over", f"config `{name}` exists twice")
                continue
            st.configs[name] = {"data": value}
            st.origin(("configs", name), obj, ("data", key))
        for key in self.mapping(obj, ("binaryData",)):
            self.note(obj, ("binaryData", key), "not carried over", "podctl configs hold text only")
        st.config_maps[obj.name] = keys
        self.rest(obj, (), obj.body, {"apiVersion", "kind", "metadata", "data", "binaryData"})

    def _secret(self, st: ImportedStack, obj: KubeObject) -> None:
        kind = self.get(obj, ("type",))
        if kind not in (
            None,
            "Opaque",
            "kubernetes.io/tls",
            "kubernetes.io/basic-auth",
            "kubernetes.io/ssh-auth",
        ):
            self.note(obj, ("type",), "not carried over", f"secrets of type {kind} are not used")
            return
        values: dict[str, bytes] = {}
        for key, value in self.mapping(obj, ("data",)).items():
            if value is None:
                value = ""
            if not isinstance(value, str):
                self.fail(obj, ("data", key), "expected base64 text")
                continue
            try:
                values[key] = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                # Never echo the value.
                self.fail(obj, ("data", key), "not valid base64")
        for key, value in self.mapping(obj, ("stringData",)).items():
            if not isinstance(value, str):
                self.fail(obj, ("stringData", key), "expected a string")
                continue
            values[key] = value.encode()  # stringData wins, as in the API server
        annotations = self.mapping(obj, ("metadata", "annotations"))
        source = annotations.get(ANNOTATION_SECRET_SOURCE)
        keys: dict[str, str] = {}
        for key, raw in values.items():
            name = config_name(obj.name, key, len(values))
            where: FieldPath = (
                "stringData" if key in self.mapping(obj, ("stringData",)) else "data",
                key,
            )
            if name in st.secrets:
                self.note(obj, where, "not carried over", f"secret `{name}` exists twice")
                continue
            spec: dict[str, str] | None = None
            if not raw and isinstance(source, str) and len(values) == 1:
                # Exported without values: point back at where the value comes from.
                kind_, _, ref = source.partition(":")
                if kind_ == "env" and ref:
                    spec = {"env": ref}
                elif kind_ == "file" and ref:
                    rel = posixpath.relpath(ref, posixpath.dirname(st.source))
                    if rel.startswith(".."):
                        self.note(
                            obj,
                            where,
                            "not carried over",
                            f"exported without its value, and its source {ref} is outside "
                            "this file's directory",
                        )
                        continue
                    spec = {"file": rel}
            if spec is None:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.note(
                        obj, where, "not carried over", "binary secret values are not supported yet"
                    )
                    continue
                var = _secret_env_var(obj.name, key)
                st.secret_env[var] = text
                spec = {"env": var}
            keys[key] = name
            st.secrets[name] = spec
            st.secret_sources[name] = f"Secret/{obj.name} key {key}"
            st.origin(("secrets", name), obj, where)
        st.k8s_secrets[obj.name] = keys
        self.rest(
            obj,
            (),
            obj.body,
            {"apiVersion", "kind", "metadata", "data", "stringData", "type"},
        )

    def _claim(self, st: ImportedStack, obj: KubeObject) -> None:
        st.volumes.setdefault(obj.name, {})
        st.claims.add(obj.name)
        st.origin(("volumes", obj.name), obj, ("metadata", "name"))
        spec = self.mapping(obj, ("spec",))
        if self.get(obj, ("spec", "resources", "requests", "storage")) is not None:
            self.note(
                obj,
                ("spec", "resources", "requests", "storage"),
                "ignored",
                "Docker local volumes have no size",
            )
        if spec.get("volumeMode") == "Block":
            self.note(obj, ("spec", "volumeMode"), "not carried over", "block volumes")
        self.rest(
            obj,
            ("spec",),
            spec,
            {"accessModes", "resources", "volumeMode"},
            reasons={"storageClassName": "volumes are Docker local volumes"},
        )

    # -- services ------------------------------------------------------------------

    def _service(self, st: ImportedStack, obj: KubeObject) -> None:
        spec = self.mapping(obj, ("spec",))
        kind = spec.get("type", "ClusterIP")
        if kind == "ExternalName":
            self.note(obj, ("spec", "type"), "not carried over", "ExternalName services")
            return
        if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
            self.fail(obj, ("spec", "type"), f"unknown Service type `{kind}`")
            return
        selector = self.mapping(obj, ("spec", "selector"))
        if not selector:
            self.note(
                obj,
                ("spec",),
                "not carried over",
                "a Service without a selector needs Endpoints managed by hand",
            )
            return
        matches = [
            pod
            for pod, lbls in st.pod_labels.items()
            if all(lbls.get(k) == v for k, v in selector.items())
        ]
        if not matches:
            self.note(obj, ("spec", "selector"), "not carried over", "selects no pod in the input")
            return
        pod = matches[0]
        if len(matches) > 1:
            self.note(
                obj,
                ("spec", "selector"),
                "approximated",
                f"selects pods {', '.join(matches)}; routes to {pod} only",
            )
        headless = spec.get("clusterIP") == "None"
        pod_ports: dict[str, int] = st.pods[pod].get("ports", {})
        for i, port in enumerate(self.seq(obj, ("spec", "ports"))):
            where: FieldPath = ("spec", "ports", i)
            if not isinstance(port, dict):
                self.fail(obj, where, "expected a mapping")
                continue
            number = self.integer(obj, (*where, "port"), minimum=1)
            if number is None:
                if "port" not in port:
                    self.fail(obj, where, "missing required field `port`")
                continue
            if port.get("protocol", "TCP") != "TCP":
                self.note(obj, (*where, "protocol"), "not carried over", "podctl forwards TCP only")
                continue
            port_name = port.get("name")
            name = obj.name if i == 0 else f"{obj.name}-{port_name or number}"
            target: int | str = number
            raw_target = port.get("targetPort")
            if isinstance(raw_target, int | str) and str(raw_target).isdigit():
                target = int(raw_target)
            elif isinstance(raw_target, str):
                if raw_target not in pod_ports:
                    self.note(
                        obj,
                        (*where, "targetPort"),
                        "not carried over",
                        f"pod {pod} has no port named {raw_target}",
                    )
                    continue
                target = raw_target
            elif raw_target is not None:
                self.fail(obj, (*where, "targetPort"), "expected a number or a port name")
                continue
            target_number = pod_ports.get(target, 0) if isinstance(target, str) else target
            host: int | None = None
            if kind == "NodePort":
                host = self.integer(obj, (*where, "nodePort"), minimum=1)
                if host is None:
                    self.note(
                        obj,
                        (*where,),
                        "approximated",
                        "no nodePort given: reachable in the stack only",
                    )
            elif kind == "LoadBalancer":
                host = number
            in_stack = host if host is not None else target_number
            if in_stack != number:
                self.note(
                    obj,
                    (*where, "port"),
                    "approximated",
                    f"in the stack it answers at {name}:{in_stack}, not {name}:{number}",
                )
            if i > 0:
                self.note(
                    obj,
                    where,
                    "approximated",
                    f"a second port is a service of its own, named {name}",
                )
            if name in st.services:
                self.note(obj, where, "not carried over", f"service {name} exists twice")
                continue
            entry: dict[str, Any] = {"pod": pod, "target": target}
            if host is not None:
                entry["port"] = host
            st.services[name] = entry
            st.origin(("services", name), obj, where)
            st.origin(("services", name, "target"), obj, (*where, "targetPort"))
            st.origin(
                ("services", name, "port"),
                obj,
                (*where, "nodePort" if kind == "NodePort" else "port"),
            )
            self.rest(obj, where, port, {"name", "port", "targetPort", "nodePort", "protocol"})
        if headless:
            self.note(
                obj,
                ("spec", "clusterIP"),
                "approximated",
                "headless: the name reaches ready replicas through podctl's proxy, "
                "not each pod's address",
            )
        self.rest(
            obj,
            ("spec",),
            spec,
            {"type", "selector", "ports", "clusterIP", "clusterIPs"},
            defaults={
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "externalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"],
                "publishNotReadyAddresses": False,
                "allocateLoadBalancerNodePorts": True,
            },
        )

    # -- workloads -----------------------------------------------------------------

    def _workload(self, st: ImportedStack, obj: KubeObject) -> None:
        kind = obj.kind
        if obj.name in st.pods:
            self.note(obj, (), "not carried over", f"a pod named {obj.name} exists already")
            return
        pod: dict[str, Any] = {}
        if kind == "Pod":
            tpl_path: FieldPath = ()
            spec_path: FieldPath = ("spec",)
        else:
            tpl_path = ("spec", "template")
            spec_path = ("spec", "template", "spec")
            spec = self.mapping(obj, ("spec",))
            replicas = 1
            if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
                got = self.integer(obj, ("spec", "replicas"))
                replicas = 1 if got is None else got
            pod["replicas"] = replicas
            st.origin(("pods", obj.name, "replicas"), obj, ("spec", "replicas"))
            self._rollout(st, obj, pod, spec)
            handled = {
                "replicas",
                "selector",
                "template",
                "strategy",
                "updateStrategy",
                "volumeClaimTemplates",
                "podManagementPolicy",
            }
            yet = {"minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"}
            for key in sorted(yet & spec.keys()):
                self.note(
                    obj,
                    ("spec", key),
                    "not supported yet",
                    "podctl's rollout has no such setting yet",
                )
            self.rest(
                obj,
                ("spec",),
                spec,
                handled | yet,
                reasons={
                    "serviceName": "no per-replica DNS names on one host",
                    "paused": "not supported yet",
                    "persistentVolumeClaimRetentionPolicy": "volumes are kept",
                },
            )
        st.origin(("pods", obj.name), obj, ("metadata", "name"))
        self._pod_template(st, obj, pod, tpl_path, spec_path)
        if kind == "StatefulSet":
            self._claim_templates(st, obj, pod)
        st.pods[obj.name] = pod

    def _rollout(
        self, st: ImportedStack, obj: KubeObject, pod: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        path: FieldPath
        if obj.kind == "Deployment":
            path = ("spec", "strategy")
            kind = self.get(obj, (*path, "type")) or "RollingUpdate"
            surge: Any = "25%"
            unavailable: Any = "25%"
        elif obj.kind in ("DaemonSet", "StatefulSet"):
            path = ("spec", "updateStrategy")
            kind = self.get(obj, (*path, "type")) or "RollingUpdate"
            surge, unavailable = 0, 1
        else:
            return
        if kind == "Recreate":
            pod["rollout"] = {"max_surge": 0, "max_unavailable": "100%"}
            self.note(
                obj,
                (*path, "type"),
                "approximated",
                "a rolling update with max_surge 0 and max_unavailable 100%",
            )
            return
        if kind == "OnDelete":
            self.note(
                obj,
                (*path, "type"),
                "approximated",
                "podctl replaces pods on change (RollingUpdate)",
            )
        elif kind != "RollingUpdate":
            self.fail(obj, (*path, "type"), f"unknown update strategy `{kind}`")
            return
        rolling = self.mapping(obj, (*path, "rollingUpdate"))
        for key, value in rolling.items():
            if key == "maxSurge" and (_is_int(value) or isinstance(value, str)):
                surge = value
            elif key == "maxUnavailable" and (_is_int(value) or isinstance(value, str)):
                unavailable = value
            elif key == "partition" and value in (0, None):
                continue
            else:
                self.note(obj, (*path, "rollingUpdate", key), "ignored", "not supported")
        if (
            obj.kind == "StatefulSet"
            and spec.get("podManagementPolicy") != "Parallel"
            and self.get(obj, ("spec", "replicas")) not in (None, 0, 1)
        ):
            self.note(
                obj,
                ("spec", "podManagementPolicy"),
                "approximated",
                "replicas start in parallel, not one by one in order",
            )
        pod["rollout"] = {"max_surge": surge, "max_unavailable": unavailable}
        st.origin(("pods", obj.name, "rollout"), obj, path)

    def _claim_templates(self, st: ImportedStack, obj: KubeObject, pod: dict[str, Any]) -> None:
        # Mounts of claim templates were recorded by _pod_template with the template's name.
        for i, tpl in enumerate(self.seq(obj, ("spec", "volumeClaimTemplates"))):
            where: FieldPath = ("spec", "volumeClaimTemplates", i)
            name = tpl.get("metadata", {}).get("name") if isinstance(tpl, dict) else None
            if not isinstance(name, str):
                self.fail(obj, where, "missing `metadata.name`")
                continue
            if pod.get("replicas", 1) > 1:
                self.note(
                    obj,
                    where,
                    "approximated",
                    "one volume shared by all replicas (podctl has no per-replica volumes yet)",
                )
            storage = self.get(obj, (*where, "spec", "resources", "requests", "storage"))
            if storage is not None:
                self.note(
                    obj,
                    (*where, "spec", "resources", "requests", "storage"),
                    "ignored",
                    "Docker local volumes have no size",
                )

    def _pod_template(
        self,
        st: ImportedStack,
        obj: KubeObject,
        pod: dict[str, Any],
        tpl_path: FieldPath,
        spec_path: FieldPath,
    ) -> None:
        name = obj.name
        meta = self.mapping(obj, (*tpl_path, "metadata"))
        labels = {}
        all_labels = {}
        for key, value in self.mapping(obj, (*tpl_path, "metadata", "labels")).items():
            text = str(value) if not isinstance(value, bool) else str(value).lower()
            all_labels[key] = text
            if not key.startswith(podctl_labels.PREFIX):
                # podctl's own (an export's selector) are set by podctl itself.
                labels[key] = text
        st.pod_labels[name] = all_labels
        if labels:
            pod["labels"] = labels
            st.origin(("pods", name, "labels"), obj, (*tpl_path, "metadata", "labels"))
        annotations = self.mapping(obj, (*tpl_path, "metadata", "annotations"))
        deps = annotations.get(ANNOTATION_DEPENDS_ON)
        if isinstance(deps, str) and deps.strip():
            pod["depends_on"] = [d.strip() for d in deps.split(",") if d.strip()]
            st.origin(
                ("pods", name, "depends_on"),
                obj,
                (*tpl_path, "metadata", "annotations", ANNOTATION_DEPENDS_ON),
            )
        if obj.kind != "Pod":
            self.rest(
                obj,
                (*tpl_path, "metadata"),
                meta,
                {"labels", "annotations", "name", "creationTimestamp"},
            )

        spec = self.mapping(obj, spec_path)
        containers = self.seq(obj, (*spec_path, "containers"))
        if not containers or not isinstance(containers[0], dict):
            self.fail(obj, (*spec_path, "containers"), "needs at least one container")
            return
        for i in range(1, len(containers)):
            self.note(
                obj,
                (*spec_path, "containers", i),
                "not carried over",
                "podctl runs the first container of a pod only",
            )
        for i in range(len(self.seq(obj, (*spec_path, "initContainers")))):
            self.note(
                obj,
                (*spec_path, "initContainers", i),
                "not carried over",
                "init containers are not supported yet",
            )

        # Restart policy: Deployment-like controllers only allow Always.
        restart = spec.get("restartPolicy", "Always")
        policies = {"Always": "always", "OnFailure": "on-failure", "Never": "never"}
        if restart not in policies:
            self.fail(obj, (*spec_path, "restartPolicy"), f"unknown restartPolicy `{restart}`")
        elif restart != "Always":
            pod["restart"] = policies[restart]
        grace = self.integer(obj, (*spec_path, "terminationGracePeriodSeconds"))
        pod["stop_grace"] = K8S_GRACE_S if grace is None else grace
        st.origin(("pods", name, "stop_grace"), obj, (*spec_path, "terminationGracePeriodSeconds"))

        cpath: FieldPath = (*spec_path, "containers", 0)
        self._container(st, obj, pod, cpath, spec_path)
        self._mounts(st, obj, pod, cpath, spec_path)
        pod_security = self.mapping(obj, (*spec_path, "securityContext"))
        self.rest(
            obj,
            (*spec_path, "securityContext"),
            pod_security,
            {"runAsUser", "runAsGroup"},
            reasons={"fsGroup": "not supported yet", "runAsNonRoot": "not checked"},
        )
        self.rest(
            obj,
            spec_path,
            spec,
            {
                "containers",
                "initContainers",
                "volumes",
                "restartPolicy",
                "terminationGracePeriodSeconds",
                "securityContext",
            },
            reasons=_POD_SPEC_REASONS,
            defaults=_POD_SPEC_DEFAULTS,
        )

    def _container(
        self,
        st: ImportedStack,
        obj: KubeObject,
        pod: dict[str, Any],
        cpath: FieldPath,
        spec_path: FieldPath,
    ) -> None:
        name = obj.name
        c = self.mapping(obj, cpath)
        image = self.text(obj, (*cpath, "image"), required=True)
        if image is not None:
            pod["image"] = image
            st.origin(("pods", name, "image"), obj, (*cpath, "image"))
        command = self.strings(obj, (*cpath, "command"))
        if command is not None:
            pod["entrypoint"] = command
            st.origin(("pods", name, "entrypoint"), obj, (*cpath, "command"))
        args = self.strings(obj, (*cpath, "args"))
        if args is not None:
            pod["command"] = args
            st.origin(("pods", name, "command"), obj, (*cpath, "args"))
        defined = {e.get("name") for e in self.seq(obj, (*cpath, "env")) if isinstance(e, dict)}
        for key in ("command", "args"):
            values: list[str] = (command if key == "command" else args) or []
            if any(set(_VAR_REF.findall(a)) & defined for a in values):
                self.note(
                    obj,
                    (*cpath, key),
                    "approximated",
                    "$(VAR) references are passed as written, not expanded",
                )
        working_dir = self.text(obj, (*cpath, "workingDir"))
        if working_dir is not None:
            pod["workdir"] = working_dir
            st.origin(("pods", name, "workdir"), obj, (*cpath, "workingDir"))

        ports = self._ports(st, obj, pod, cpath)
        pod["env"] = self._env(st, obj, cpath)
        self._resources(st, obj, pod, cpath)
        for kind, key in (
            ("readiness", "readinessProbe"),
            ("liveness", "livenessProbe"),
            ("startup", "startupProbe"),
        ):
            probe = self._probe(obj, (*cpath, key), ports)
            if probe is not None:
                pod[kind] = probe
                st.origin(("pods", name, kind), obj, (*cpath, key))

        security = self.mapping(obj, (*cpath, "securityContext"))
        pod_security = self.mapping(obj, (*spec_path, "securityContext"))
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        group = security.get("runAsGroup", pod_security.get("runAsGroup"))
        if _is_int(user):
            pod["user"] = f"{user}:{group}" if _is_int(group) else str(user)
            st.origin(("pods", name, "user"), obj, (*cpath, "securityContext"))
        elif _is_int(group):
            self.note(
                obj, (*cpath, "securityContext", "runAsGroup"), "ignored", "a group without a user"
            )
        if security.get("readOnlyRootFilesystem") is True:
            pod["read_only"] = True
        caps = security.get("capabilities")
        if isinstance(caps, dict):
            for key, field in (("add", "cap_add"), ("drop", "cap_drop")):
                cap_values = self.strings(obj, (*cpath, "securityContext", "capabilities", key))
                if cap_values:
                    pod[field] = cap_values
            self.rest(obj, (*cpath, "securityContext", "capabilities"), caps, {"add", "drop"})
        self.rest(
            obj,
            (*cpath, "securityContext"),
            security,
            {"runAsUser", "runAsGroup", "readOnlyRootFilesystem", "capabilities"},
            reasons={
                "privileged": "privileged containers are not supported",
                "runAsNonRoot": "not checked",
            },
            defaults={"privileged": False, "readOnlyRootFilesystem": False},
        )
        self.rest(
            obj,
            cpath,
            c,
            {
                "name",
                "image",
                "command",
                "args",
                "workingDir",
                "ports",
                "env",
                "envFrom",
                "resources",
                "readinessProbe",
                "livenessProbe",
                "startupProbe",
                "volumeMounts",
                "securityContext",
            },
            reasons=_CONTAINER_REASONS,
            defaults=_CONTAINER_DEFAULTS,
        )

    def _ports(
        self, st: ImportedStack, obj: KubeObject, pod: dict[str, Any], cpath: FieldPath
    ) -> dict[str, int]:
        out: dict[str, int] = {}
        for i, port in enumerate(self.seq(obj, (*cpath, "ports"))):
            where: FieldPath = (*cpath, "ports", i)
            if not isinstance(port, dict):
                self.fail(obj, where, "expected a mapping")
                continue
            number = self.integer(obj, (*where, "containerPort"), minimum=1)
            if number is None:
                if "containerPort" not in port:
                    self.fail(obj, where, "missing required field `containerPort`")
                continue
            if port.get("protocol", "TCP") != "TCP":
                self.note(obj, (*where, "protocol"), "not carried over", "podctl forwards TCP only")
                continue
            name = port.get("name")
            if not isinstance(name, str) or not _PORT_NAME.fullmatch(name) or name.isdigit():
                name = f"port-{number}"
            out[name] = number
            st.origin(("pods", obj.name, "ports", name), obj, (*where, "containerPort"))
            if "hostPort" in port:
                self.note(
                    obj,
                    (*where, "hostPort"),
                    "ignored",
                    "publish with a NodePort or LoadBalancer Service",
                )
            self.rest(
                obj,
                where,
                port,
                {"name", "containerPort", "protocol", "hostPort"},
                reasons={"hostIP": "publish with a Service"},
            )
        if out:
            pod["ports"] = out
        return out

    def _env(self, st: ImportedStack, obj: KubeObject, cpath: FieldPath) -> dict[str, Any]:
        env: dict[str, Any] = {}
        name = obj.name
        # envFrom first: explicit `env` entries win, as in the kubelet.
        for i, source in enumerate(self.seq(obj, (*cpath, "envFrom"))):
            where: FieldPath = (*cpath, "envFrom", i)
            if not isinstance(source, dict):
                self.fail(obj, where, "expected a mapping")
                continue
            prefix = source.get("prefix", "")
            for ref_key, kind in (("configMapRef", "config"), ("secretRef", "secret")):
                ref = source.get(ref_key)
                if not isinstance(ref, dict):
                    continue
                ref_name = ref.get("name")
                known = st.config_maps if kind == "config" else st.k8s_secrets
                if ref_name not in known:
                    what = "ConfigMap" if kind == "config" else "Secret"
                    verdict: Verdict = "ignored" if ref.get("optional") else "not carried over"
                    self.note(
                        obj, (*where, ref_key), verdict, f"{what} {ref_name} is not in the input"
                    )
                    continue
                for key, item in known[ref_name].items():
                    var = f"{prefix}{key}"
                    if not _ENV_NAME.fullmatch(var):
                        self.note(
                            obj,
                            (*where, ref_key),
                            "ignored",
                            f"key {key} is not a valid variable name",
                        )
                        continue
                    env[var] = {kind: item}
                    st.origin(("pods", name, "env", var), obj, where)
        for i, item in enumerate(self.seq(obj, (*cpath, "env"))):
            where = (*cpath, "env", i)
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                self.fail(obj, where, "expected a mapping with `name`")
                continue
            var = item["name"]
            if "valueFrom" in item:
                ref = self._value_from(st, obj, (*where, "valueFrom"), item["valueFrom"])
                if ref is None:
                    env.pop(var, None)
                    continue
                env[var] = ref
            else:
                value = item.get("value", "")
                if not isinstance(value, str):
                    value = "" if value is None else str(value)
                if set(_VAR_REF.findall(value)) & set(env):
                    self.note(
                        obj,
                        (*where, "value"),
                        "approximated",
                        "$(VAR) references are passed as written, not expanded",
                    )
                env[var] = value
            st.origin(("pods", name, "env", var), obj, where)
        return env

    def _value_from(
        self, st: ImportedStack, obj: KubeObject, where: FieldPath, source: Any
    ) -> dict[str, str] | None:
        if not isinstance(source, dict):
            self.fail(obj, where, "expected a mapping")
            return None
        for ref_key, kind, what in (
            ("configMapKeyRef", "config", "ConfigMap"),
            ("secretKeyRef", "secret", "Secret"),
        ):
            ref = source.get(ref_key)
            if not isinstance(ref, dict):
                continue
            known = st.config_maps if kind == "config" else st.k8s_secrets
            map_name, key = ref.get("name"), ref.get("key")
            verdict: Verdict = "ignored" if ref.get("optional") else "not carried over"
            if map_name not in known:
                self.note(obj, (*where, ref_key), verdict, f"{what} {map_name} is not in the input")
                return None
            if key not in known[map_name]:
                self.note(obj, (*where, ref_key), verdict, f"{what} {map_name} has no key {key}")
                return None
            return {kind: known[map_name][key]}
        self.note(
            obj,
            where,
            "not carried over",
            "only configMapKeyRef and secretKeyRef values are supported",
        )
        return None

    def _resources(
        self, st: ImportedStack, obj: KubeObject, pod: dict[str, Any], cpath: FieldPath
    ) -> None:
        path: FieldPath = (*cpath, "resources")
        resources = self.mapping(obj, path)
        limits = self.mapping(obj, (*path, "limits"))
        out: dict[str, Any] = {}
        for key, value in limits.items():
            where: FieldPath = (*path, "limits", key)
            try:
                if key == "cpu":
                    out["cpus"] = parse_cpus(value) / 1e9
                elif key == "memory":
                    out["memory"] = parse_size(value)
                else:
                    self.note(obj, where, "not carried over", f"no {key} limits on one host")
            except ValueError as exc:
                self.note(obj, where, "not carried over", f"cannot read the quantity: {exc}")
        if out:
            pod["resources"] = out
            st.origin(("pods", obj.name, "resources"), obj, (*path, "limits"))
        if "requests" in resources:
            self.note(
                obj,
                (*path, "requests"),
                "ignored",
                "no admission on one host: podctl applies limits only",
            )
        self.rest(obj, path, resources, {"limits", "requests"})

    def _probe(
        self, obj: KubeObject, path: FieldPath, ports: dict[str, int]
    ) -> dict[str, Any] | None:
        probe = self.mapping(obj, path)
        if not probe:
            return None
        out: dict[str, Any] = {}
        handlers = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe]
        if "grpc" in handlers:
            self.note(obj, (*path, "grpc"), "not carried over", "gRPC probes are not supported yet")
            return None
        if len(handlers) != 1:
            self.fail(obj, path, "a probe needs exactly one of httpGet, tcpSocket, exec or grpc")
            return None
        handler = handlers[0]
        hpath: FieldPath = (*path, handler)
        if handler == "exec":
            command = self.strings(obj, (*hpath, "command"))
            if not command:
                self.fail(obj, hpath, "needs a command")
                return None
            out["exec"] = command
        else:
            spec = self.mapping(obj, hpath)
            port = spec.get("port")
            if isinstance(port, str) and port.isdigit():
                port = int(port)
            if not (_is_int(port) or isinstance(port, str)):
                self.fail(obj, (*hpath, "port"), "expected a port number or name")
                return None
            if "host" in spec:
                self.note(obj, (*hpath, "host"), "ignored", "probes go to the replica")
            if handler == "tcpSocket":
                out["tcp"] = {"port": port}
                self.rest(obj, hpath, spec, {"port", "host"})
            else:
                http: dict[str, Any] = {"port": port, "path": spec.get("path") or "/"}
                scheme = spec.get("scheme", "HTTP")
                if scheme not in ("HTTP", "HTTPS"):
                    self.fail(obj, (*hpath, "scheme"), f"unknown scheme `{scheme}`")
                    return None
                if scheme == "HTTPS":
                    http["scheme"] = "https"
                headers = {}
                for i, header in enumerate(self.seq(obj, (*hpath, "httpHeaders"))):
                    if isinstance(header, dict) and isinstance(header.get("name"), str):
                        headers[header["name"]] = str(header.get("value", ""))
                    else:
                        self.fail(obj, (*hpath, "httpHeaders", i), "expected name and value")
                if headers:
                    http["headers"] = headers
                out["http"] = http
                self.rest(obj, hpath, spec, {"port", "host", "path", "scheme", "httpHeaders"})
        fields = {
            "initialDelaySeconds": "initial_delay",
            "periodSeconds": "period",
            "timeoutSeconds": "timeout",
            "successThreshold": "success_threshold",
            "failureThreshold": "failure_threshold",
        }
        for key, field in fields.items():
            minimum = 0 if key == "initialDelaySeconds" else 1
            value = self.integer(obj, (*path, key), minimum=minimum)
            if value is not None:
                out[field] = value
        self.rest(
            obj,
            path,
            probe,
            {*handlers, *fields},
            reasons={"terminationGracePeriodSeconds": "not supported yet"},
        )
        return out

    def _mounts(
        self,
        st: ImportedStack,
        obj: KubeObject,
        pod: dict[str, Any],
        cpath: FieldPath,
        spec_path: FieldPath,
    ) -> None:
        volumes: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, vol in enumerate(self.seq(obj, (*spec_path, "volumes"))):
            if isinstance(vol, dict) and isinstance(vol.get("name"), str):
                volumes[vol["name"]] = (i, vol)
            else:
                self.fail(obj, (*spec_path, "volumes", i), "expected a mapping with `name`")
        claims = (
            {
                tpl["metadata"]["name"]
                for tpl in self.seq(obj, ("spec", "volumeClaimTemplates"))
                if isinstance(tpl, dict)
                and isinstance(tpl.get("metadata"), dict)
                and isinstance(tpl["metadata"].get("name"), str)
            }
            if obj.kind == "StatefulSet"
            else set()
        )
        mounts: list[dict[str, Any]] = []
        reported: set[str] = set()
        for i, vm in enumerate(self.seq(obj, (*cpath, "volumeMounts"))):
            where: FieldPath = (*cpath, "volumeMounts", i)
            if not isinstance(vm, dict):
                self.fail(obj, where, "expected a mapping")
                continue
            vol_name = vm.get("name")
            target = vm.get("mountPath")
            if not isinstance(vol_name, str) or not isinstance(target, str):
                self.fail(obj, where, "needs `name` and `mountPath`")
                continue
            read_only = vm.get("readOnly") is True
            sub_path = vm.get("subPath")
            self.rest(
                obj,
                where,
                vm,
                {"name", "mountPath", "readOnly", "subPath"},
                defaults={"mountPropagation": "None"},
            )
            start = len(mounts)
            if vol_name in claims:
                if sub_path:
                    self.note(
                        obj, (*where, "subPath"), "not carried over", "podctl mounts whole volumes"
                    )
                    continue
                volume = f"{vol_name}-{obj.name}"
                st.volumes.setdefault(volume, {})
                st.origin(("volumes", volume), obj, where)
                mounts.append({"volume": volume, "path": target, "read_only": read_only})
            elif vol_name not in volumes:
                self.fail(obj, (*where, "name"), f"no volume named `{vol_name}` in the pod")
                continue
            else:
                vi, vol = volumes[vol_name]
                vpath: FieldPath = (*spec_path, "volumes", vi)
                mounts.extend(
                    self._volume_mount(
                        st, obj, vpath, vol, where, target, read_only, sub_path, reported
                    )
                )
            for j in range(start, len(mounts)):
                st.origin(("pods", obj.name, "mounts", j), obj, where)
        if mounts:
            pod["mounts"] = [
                {k: v for k, v in m.items() if v is not None and v is not False} for m in mounts
            ]

    def _read_only_rootfs(self, obj: KubeObject, mount_path: FieldPath) -> bool:
        container = mount_path[: mount_path.index("volumeMounts")]
        return self.get(obj, (*container, "securityContext", "readOnlyRootFilesystem")) is True

    def _volume_mount(
        self,
        st: ImportedStack,
        obj: KubeObject,
        vpath: FieldPath,
        vol: dict[str, Any],
        where: FieldPath,
        target: str,
        read_only: bool,
        sub_path: Any,
        reported: set[str],
    ) -> list[dict[str, Any]]:
        name = vol["name"]
        first = name not in reported
        reported.add(name)
        if isinstance(vol.get("persistentVolumeClaim"), dict):
            claim = vol["persistentVolumeClaim"].get("claimName")
            if not isinstance(claim, str):
                self.fail(obj, (*vpath, "persistentVolumeClaim"), "needs `claimName`")
                return []
            if sub_path:
                self.note(
                    obj, (*where, "subPath"), "not carried over", "podctl mounts whole volumes"
                )
                return []
            if claim not in st.claims:
                st.volumes.setdefault(claim, {})
                st.origin(("volumes", claim), obj, vpath)
                if first:
                    self.note(
                        obj,
                        (*vpath, "persistentVolumeClaim"),
                        "approximated",
                        f"PersistentVolumeClaim {claim} is not in the input: a new named volume",
                    )
            ro = read_only or vol["persistentVolumeClaim"].get("readOnly") is True
            return [{"volume": claim, "path": target, "read_only": ro}]
        if "emptyDir" in vol:
            empty = vol["emptyDir"] if isinstance(vol["emptyDir"], dict) else {}
            if (
                target == "/tmp"
                and empty.get("medium") == "Memory"
                and self._read_only_rootfs(obj, where)
            ):
                return []  # podctl gives a read-only pod a tmpfs /tmp itself
            if sub_path:
                self.note(
                    obj, (*where, "subPath"), "not carried over", "podctl mounts whole volumes"
                )
                return []
            volume = f"{obj.name}-{name}"
            st.volumes.setdefault(volume, {})
            st.origin(("volumes", volume), obj, vpath)
            if first:
                self.note(
                    obj,
                    (*vpath, "emptyDir"),
                    "approximated",
                    f"a named volume {volume}, shared by the replicas and kept across restarts",
                )
            return [{"volume": volume, "path": target, "read_only": read_only}]
        for key, kind, what, ref_field in (
            ("configMap", "config", "ConfigMap", "name"),
            ("secret", "secret", "Secret", "secretName"),
        ):
            source = vol.get(key)
            if not isinstance(source, dict):
                continue
            map_name = str(source.get(ref_field))
            known = (st.config_maps if kind == "config" else st.k8s_secrets).get(map_name)
            if known is None:
                verdict: Verdict = "ignored" if source.get("optional") else "not carried over"
                if first:
                    self.note(obj, (*vpath, key), verdict, f"{what} {map_name} is not in the input")
                return []
            mode = source.get("defaultMode", K8S_VOLUME_MODE)
            items: list[tuple[str, str, Any]] = []  # key, relative path, mode
            raw_items = source.get("items")
            if isinstance(raw_items, list):
                for j, item in enumerate(raw_items):
                    if not isinstance(item, dict) or item.get("key") not in known:
                        optional = source.get("optional")
                        self.note(
                            obj,
                            (*vpath, key, "items", j),
                            "ignored" if optional else "not carried over",
                            f"{what} {map_name} has no such key",
                        )
                        continue
                    items.append(
                        (item["key"], str(item.get("path", item["key"])), item.get("mode", mode))
                    )
            else:
                items = [(k, k, mode) for k in known]
            out = []
            if sub_path:
                # `subPath` picks one file of the volume and mounts it at mountPath.
                picked = [it for it in items if it[1] == sub_path]
                if not picked:
                    self.note(
                        obj,
                        (*where, "subPath"),
                        "not carried over",
                        f"{what} {map_name} has no key {sub_path}",
                    )
                    return []
                k, _, m = picked[0]
                out.append({kind: known[k], "path": target, "mode": m})
            else:
                for k, rel, m in items:
                    out.append({kind: known[k], "path": posixpath.join(target, rel), "mode": m})
                if first and out:
                    self.note(
                        obj,
                        (*vpath, key),
                        "approximated",
                        "one file per key; the directory's other files stay visible "
                        "and changes roll the pod instead of updating in place",
                    )
            for m in out:
                if not _is_int(m["mode"]):
                    self.fail(obj, (*vpath, key, "defaultMode"), "expected an integer mode")
                    return []
            return out
        if first:
            kinds = [k for k in vol if k != "name"]
            what = kinds[0] if kinds else "volume"
            reason = (
                "host paths are opt-in in podctl: write a stack file with allow_host_paths"
                if what == "hostPath"
                else f"{what} volumes"
            )
            self.note(obj, vpath, "not carried over", reason)
        self.note(obj, where, "not carried over", f"volume {name} is not carried over")
        return []


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


__all__ = [
    "ANNOTATION_DEPENDS_ON",
    "ANNOTATION_SECRET_SOURCE",
    "ImportResult",
    "ImportedStack",
    "Importer",
    "KubeObject",
    "config_name",
    "is_kubernetes_object",
    "stack_name_from_stem",
]
