"""Readiness, liveness and startup probes: httpGet, tcpSocket and exec carry over
with Kubernetes' timings; gRPC is reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podctl.bridge.kube_in.objects import is_int
from podctl.bridge.kube_in.reader import Reader

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import KubeObject
    from podctl.spec.errors import FieldPath


class ProbeImport(Reader):
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
            if not (is_int(port) or isinstance(port, str)):
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
