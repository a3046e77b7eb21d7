"""The first container of a pod template -> a podctl pod's process: image,
command/args (Docker's entrypoint and command, as in the kubelet), env and
envFrom (ConfigMap/Secret references are an explicit env opt-in), ports,
resources (limits applied; requests reported) and the security context."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from podctl.bridge.kube_in.objects import is_int
from podctl.bridge.kube_in.probes import ProbeImport
from podctl.spec.units import parse_cpus, parse_size

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import ImportedStack, KubeObject
    from podctl.bridge.report import Verdict
    from podctl.spec.errors import FieldPath

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

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
# `$(VAR)`: the kubelet expands it in command, args and env values when VAR is defined.
_VAR_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class ContainerImport(ProbeImport):
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
        if is_int(user):
            pod["user"] = f"{user}:{group}" if is_int(group) else str(user)
            st.origin(("pods", name, "user"), obj, (*cpath, "securityContext"))
        elif is_int(group):
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
                "podctl has one `resources` value, used for admission and applied as the "
                "limit: it is taken from `limits`",
            )
        self.rest(obj, path, resources, {"limits", "requests"})
