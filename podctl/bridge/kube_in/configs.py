"""ConfigMap, Secret and PersistentVolumeClaim -> configs, secrets and volumes.

A ConfigMap or Secret becomes one config/secret per key, named `<map>.<key>`
(just `<map>` when the only key carries the map's own name, as `podctl export`
writes them). Secret values never become files or log lines: they are handed to
normalisation as environment variables (`secrets.<x>.env`) kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from typing import TYPE_CHECKING

from podctl.bridge.kube_in.objects import (
    ANNOTATION_SECRET_SOURCE,
    config_name,
    secret_env_var,
    type_name,
)
from podctl.bridge.kube_in.reader import Reader

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import ImportedStack, KubeObject
    from podctl.spec.errors import FieldPath


class ConfigImport(Reader):
    def _config_map(self, st: ImportedStack, obj: KubeObject) -> None:
        data = self.mapping(obj, ("data",))
        keys: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(value, str):
                self.fail(obj, ("data", key), f"expected a string, got {type_name(value)}")
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
                var = secret_env_var(obj.name, key)
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
