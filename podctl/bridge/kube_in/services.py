"""Service -> podctl services: ClusterIP in the stack, NodePort on 127.0.0.1:nodePort,
LoadBalancer on 127.0.0.1:port, headless through the proxy; pods by selector,
`targetPort` by number or name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podctl.bridge.kube_in.reader import Reader

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import ImportedStack, KubeObject
    from podctl.spec.errors import FieldPath


class ServiceImport(Reader):
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
