"""What the importer works on: one Kubernetes object, the stack built from them,
and the small helpers every concept module shares."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from podctl.spec.errors import FieldPath

if TYPE_CHECKING:
    from podctl.bridge.kyaml import YamlDocument
    from podctl.bridge.report import FidelityEntry
    from podctl.spec import schema
    from podctl.spec.errors import SpecIssue

# Annotations `podctl export` writes and import reads back.
ANNOTATION_DEPENDS_ON = "podctl.io/depends-on"
ANNOTATION_SECRET_SOURCE = "podctl.io/secret-source"
# Secret values are handed to normalisation through environment variables with this prefix.
SECRET_ENV_PREFIX = "PODCTL_K8S_SECRET_"

K8S_GRACE_S = 30  # terminationGracePeriodSeconds default
K8S_VOLUME_MODE = 0o644  # defaultMode of configMap and secret volumes

_DNS_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


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
        # revisionHistoryLimit of each workload; podctl keeps history per stack.
        self.history: list[tuple[int, KubeObject]] = []
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


def secret_env_var(secret: str, key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", f"{secret}_{key}").upper().strip("_")[:60]
    digest = hashlib.sha256(f"{secret}\0{key}".encode()).hexdigest()[:8]
    return f"{SECRET_ENV_PREFIX}{stem}_{digest}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: Any) -> str:
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
