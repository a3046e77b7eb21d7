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

The code is split by concept: `objects` (what is read and built), `reader`
(located access, report and issues), `configs`, `services`, `workloads`,
`containers`, `probes`, `volumes`, and `importer`, which ties them together.
"""

from __future__ import annotations

from podctl.bridge.kube_in.importer import Importer
from podctl.bridge.kube_in.objects import (
    ANNOTATION_DEPENDS_ON,
    ANNOTATION_SECRET_SOURCE,
    SECRET_ENV_PREFIX,
    ImportedStack,
    ImportResult,
    KubeObject,
    config_name,
    is_kubernetes_object,
    stack_name_from_stem,
)

__all__ = [
    "ANNOTATION_DEPENDS_ON",
    "ANNOTATION_SECRET_SOURCE",
    "SECRET_ENV_PREFIX",
    "ImportResult",
    "ImportedStack",
    "Importer",
    "KubeObject",
    "config_name",
    "is_kubernetes_object",
    "stack_name_from_stem",
]
