"""Kubernetes YAML in and out, compose export, and the fidelity report.

    loaded = load(["app.yaml", "stacks/shop"])   # stack files and/or manifests
    loaded.stacks   -> [DesiredStack]   (normalised exactly like stack files)
    loaded.report   -> [FidelityEntry]  (what did not carry over, and why)
    loaded.issues   -> [SpecIssue]      (FILE:LINE:COL problems: exit 2)

This room reads `podctl.spec` only; the command line uses it.
"""

from __future__ import annotations

from podctl.bridge.export import export
from podctl.bridge.inputs import LoadedInputs, is_kubernetes, load
from podctl.bridge.render import render_stack
from podctl.bridge.report import FidelityEntry

__all__ = ["FidelityEntry", "LoadedInputs", "export", "is_kubernetes", "load", "render_stack"]
