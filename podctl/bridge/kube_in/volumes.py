"""volumeMounts and pod volumes -> podctl mounts: PVCs and claim templates as named
volumes, configMap/secret volumes as one file per key (`items`, `defaultMode`,
`subPath`), emptyDir as a named volume; other volume kinds are reported."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from podctl.bridge.kube_in.objects import K8S_VOLUME_MODE, is_int
from podctl.bridge.kube_in.reader import Reader

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import ImportedStack, KubeObject
    from podctl.bridge.report import Verdict
    from podctl.spec.errors import FieldPath


class VolumeImport(Reader):
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
                if not is_int(m["mode"]):
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
