"""Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController and Pod
-> podctl pods.

The controller's side: replicas, the update strategy (maxSurge/maxUnavailable
-> `rollout`, Kubernetes' 25% defaults when absent), StatefulSet claim
templates, the pod template's labels, restart policy and grace period
(terminationGracePeriodSeconds 30 by default). The first container is read by
`containers`, its mounts by `volumes`; pod-spec fields with no meaning on one
host are reported with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podctl import labels as podctl_labels
from podctl.bridge.kube_in.containers import ContainerImport
from podctl.bridge.kube_in.objects import ANNOTATION_DEPENDS_ON, K8S_GRACE_S, is_int
from podctl.bridge.kube_in.volumes import VolumeImport

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import ImportedStack, KubeObject
    from podctl.spec.errors import FieldPath

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


class WorkloadImport(ContainerImport, VolumeImport):
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
            if kind in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
                got = self.integer(obj, ("spec", "replicas"))
                replicas = 1 if got is None else got
            pod["replicas"] = replicas
            st.origin(("pods", obj.name, "replicas"), obj, ("spec", "replicas"))
            self._rollout(st, obj, pod, spec)
            if kind in ("ReplicationController", "ReplicaSet"):
                # Neither replaces running pods when its template changes; podctl does.
                self.note(
                    obj,
                    ("spec", "template"),
                    "approximated",
                    "a template change rolls the pods (a bare "
                    f"{kind} leaves running pods as they are)",
                )
            handled = {
                "replicas",
                "selector",
                "template",
                "strategy",
                "updateStrategy",
                "volumeClaimTemplates",
                "podManagementPolicy",
            }
            self._rollout_timing(st, obj, pod)
            self.rest(
                obj,
                ("spec",),
                spec,
                handled | {"minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"},
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
            pod["rollout"] = {"strategy": "recreate"}
            st.origin(("pods", obj.name, "rollout"), obj, path)
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
            if key == "maxSurge" and (is_int(value) or isinstance(value, str)):
                surge = value
            elif key == "maxUnavailable" and (is_int(value) or isinstance(value, str)):
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

    def _rollout_timing(self, st: ImportedStack, obj: KubeObject, pod: dict[str, Any]) -> None:
        """minReadySeconds, progressDeadlineSeconds, revisionHistoryLimit."""
        rollout: dict[str, Any] = pod.setdefault("rollout", {})
        # A Kubernetes controller marks a stalled rollout failed and stays there;
        # it never rolls back by itself (podctl's own default does).
        rollout["auto_rollback"] = False
        min_ready = self.integer(obj, ("spec", "minReadySeconds"))
        if min_ready is not None:
            rollout["min_ready"] = f"{min_ready}s"
            st.origin(("pods", obj.name, "rollout", "min_ready"), obj, ("spec", "minReadySeconds"))
        deadline = self.integer(obj, ("spec", "progressDeadlineSeconds"), minimum=1)
        if deadline is not None:
            rollout["progress_deadline"] = f"{deadline}s"
            st.origin(
                ("pods", obj.name, "rollout", "progress_deadline"),
                obj,
                ("spec", "progressDeadlineSeconds"),
            )
        if deadline is not None and obj.kind != "Deployment":
            self.note(
                obj,
                ("spec", "progressDeadlineSeconds"),
                "approximated",
                f"a {obj.kind} has no progress deadline in Kubernetes; podctl applies it",
            )
        history = self.integer(obj, ("spec", "revisionHistoryLimit"))
        if history is not None:
            if history < 1:
                self.note(
                    obj,
                    ("spec", "revisionHistoryLimit"),
                    "approximated",
                    "podctl keeps at least one revision (for undo)",
                )
                history = 1
            st.history.append((history, obj))

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
