"""How much of real Kubernetes YAML podctl imports: the corpus under tests/corpus/kubernetes.

    python -m bench.bridge_corpus            # prints the Markdown tables
    python -m bench.bridge_corpus --write    # also writes bench/results/bridge.md

Each file is loaded on its own (as `podctl validate --report FILE` does) and
each of its objects (documents, and the items of a `List`) is counted once:

- **imported fully**: a kind podctl runs, with no report entry and no error;
- **imported with a report**: it runs, and the report says what did not carry
  over exactly (a field ignored or approximated);
- **not supported**: a kind podctl has no equivalent of (listed by kind);
- **error**: the object is wrong as podctl reads it (a located `FILE:LINE:COL`
  error; the rest of its file still gets its report).

The comparison is podman's documented support table (`docs/kubernetes_support.md`):
Debian 12's podman (4.3.1) installs, but its `kube play` has no `--dry-run` and
needs every image pulled first, which no registry here allows, so it could not
be run on the same files.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

from podctl import bridge
from podctl.bridge import kyaml
from podctl.bridge.kube_in import is_kubernetes_object

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "kubernetes"
RESULTS = ROOT / "bench" / "results" / "bridge.md"


def objects(path: Path) -> list[str]:
    """`Kind/name` of every object in the file (documents and List items)."""
    try:
        docs = kyaml.parse_documents(path.read_text(encoding="utf-8"))
    except (kyaml.ParseError, OSError, UnicodeDecodeError):
        return []
    out = []
    for doc in docs:
        data: Any = doc.data
        if not isinstance(data, dict):
            continue
        items = data.get("items")
        kind = data.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
            candidates = [i for i in items if is_kubernetes_object(i)]
        else:
            candidates = [data] if is_kubernetes_object(data) else []
        for obj in candidates:
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            name = meta.get("name") if isinstance(meta.get("name"), str) else ""
            out.append(f"{obj['kind']}/{name}" if name else str(obj["kind"]))
    return out


# The kinds podman's own support table (docs/kubernetes_support.md) documents for
# `podman kube play`; it skips Services, sets Deployment replicas to 1 and marks
# readinessProbe and startupProbe "no".
PODMAN_KINDS = frozenset(
    {"Pod", "Deployment", "DaemonSet", "Job", "PersistentVolumeClaim", "ConfigMap"}
)
WORKLOAD_KINDS = frozenset(
    {"Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "ReplicationController"}
)


def podman_losses(path: Path) -> collections.Counter[str]:
    """What podman's table says it would lose in this file (counted per object)."""
    out: collections.Counter[str] = collections.Counter()
    try:
        docs = kyaml.parse_documents(path.read_text(encoding="utf-8"))
    except (kyaml.ParseError, OSError, UnicodeDecodeError):
        return out
    for doc in docs:
        obj: Any = doc.data
        if not is_kubernetes_object(obj):
            continue
        kind = obj["kind"]
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        if kind == "Service":
            out["services"] += 1
        replicas = spec.get("replicas")
        if kind == "Deployment" and isinstance(replicas, int) and replicas > 1:
            out["replicas"] += 1
        if kind in WORKLOAD_KINDS:
            pod = spec if kind == "Pod" else (spec.get("template") or {}).get("spec") or {}
            containers = pod.get("containers") if isinstance(pod, dict) else None
            if isinstance(containers, list) and any(
                isinstance(c, dict) and ("readinessProbe" in c or "startupProbe" in c)
                for c in containers
            ):
                out["probes"] += 1
    return out


def classify(path: Path) -> list[tuple[str, str]]:
    """(outcome, kind) for every object of one file."""
    loaded = bridge.load([path], environ={})
    entries: dict[str, list[Any]] = collections.defaultdict(list)
    for entry in loaded.report:
        entries[entry.document].append(entry)
    errors = {issue.field.split(" ", 1)[0] for issue in loaded.issues if issue.field}
    file_error = any(not issue.field for issue in loaded.issues)
    out = []
    for ref in objects(path):
        kind = ref.split("/", 1)[0]
        mine = entries.get(ref, [])
        if any(e.path == "" and e.verdict == "not carried over" for e in mine):
            out.append(("not supported", kind))
        elif ref in errors or (file_error and not mine):
            out.append(("error", kind))
        elif mine:
            out.append(("with report", kind))
        else:
            out.append(("fully", kind))
    return out


def run() -> str:
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yaml", ".yml"))
    outcomes: collections.Counter[str] = collections.Counter()
    unsupported: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    podman: collections.Counter[str] = collections.Counter()
    for path in files:
        podman += podman_losses(path)
        for outcome, kind in classify(path):
            outcomes[outcome] += 1
            by_kind[kind][outcome] += 1
            if outcome == "not supported":
                unsupported[kind] += 1
    total = sum(outcomes.values())

    def share(n: int) -> str:
        return f"{n} ({100 * n / total:.0f} %)" if total else "0"

    lines = [
        f"Corpus: {len(files)} files, {total} Kubernetes objects "
        "(tests/corpus/kubernetes, sources in its README).",
        "",
        "| outcome | objects |",
        "|---|---:|",
        f"| imported fully | {share(outcomes['fully'])} |",
        f"| imported with a report | {share(outcomes['with report'])} |",
        f"| not supported (kind) | {share(outcomes['not supported'])} |",
        f"| error (FILE:LINE:COL) | {share(outcomes['error'])} |",
        "",
        "Not supported, by kind: "
        + ", ".join(f"{kind} {n}" for kind, n in unsupported.most_common())
        + ".",
        "",
        "podman, by its documented support table (docs/kubernetes_support.md; not run: "
        "Debian's podman 4.3.1 has no `kube play --dry-run` and needs every image pulled, "
        "and no registry is reachable here):",
        "",
        "| | podctl | podman kube play (documented) |",
        "|---|---:|---:|",
        f"| objects of a kind carried over | {share(total - outcomes['not supported'])} "
        f"| {share(sum(c for k, n in by_kind.items() if k in PODMAN_KINDS for c in n.values()))} |",
        f"| Services ({podman['services']}) | in-stack + host ports | skipped |",
        f"| Deployments with replicas > 1 ({podman['replicas']}) | replicas kept | set to 1 |",
        f"| workloads with readiness/startup probes ({podman['probes']}) | probes kept | ignored |",
        "| what was lost | listed per field, FILE:LINE:COL | no per-field report |",
        "",
        "| kind | fully | with report | not supported | error |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in sorted(by_kind, key=lambda k: (-sum(by_kind[k].values()), k)):
        c = by_kind[kind]
        lines.append(
            f"| {kind} | {c['fully']} | {c['with report']} | {c['not supported']} | {c['error']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS}")
    args = parser.parse_args()
    text = run()
    sys.stdout.write(text)
    if args.write:
        head = RESULTS.read_text().split("<!-- figures -->")[0] if RESULTS.exists() else ""
        RESULTS.write_text(head + "<!-- figures -->\n" + text)


if __name__ == "__main__":
    main()
