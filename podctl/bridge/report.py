"""The fidelity report: every field or kind that did not carry over exactly.

Converting between podctl and Kubernetes is lossy both ways (one host has no
scheduler, no API server, no per-replica DNS names...). Nothing is dropped
silently: each loss is one `FidelityEntry` naming the document (`Deployment/web`),
the field path inside it, what happened and why. `podctl validate --report`
prints them; `podctl run` shows them as warnings at start.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Verdict = Literal["ignored", "approximated", "not carried over", "not supported yet"]


class FidelityEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One field or object that did not carry over exactly."""

    file: str
    line: int
    column: int
    document: str  # "Deployment/frontend", or "pod web" on export
    path: str  # "spec.template.spec.nodeSelector"; "" for the whole document
    verdict: Verdict
    reason: str

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return (
            f"{self.file}:{self.line}:{self.column}: {self.document}{where}: "
            f"{self.verdict} ({self.reason})"
        )


def sort_entries(entries: list[FidelityEntry]) -> list[FidelityEntry]:
    """File order, then position: the order a reader goes through the input."""
    return sorted(entries, key=lambda e: (e.file, e.line, e.column, e.path))


__all__ = ["FidelityEntry", "Verdict", "sort_entries"]
