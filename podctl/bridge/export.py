"""`podctl export`: loaded stacks as Kubernetes YAML or a compose file (text)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import yaml

from podctl.bridge.kube_out import export_kubernetes, secret_values

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.bridge.inputs import LoadedInputs
    from podctl.bridge.report import FidelityEntry


def export(
    loaded: LoadedInputs,
    to: Literal["kubernetes", "compose"] | str,
    *,
    environ: Mapping[str, str],
    include_secret_values: bool = False,
) -> tuple[str, list[FidelityEntry]]:
    """The export text and what did not carry over."""
    env = {**environ, **loaded.secret_env}
    report: list[FidelityEntry] = []
    if to == "compose":
        from podctl.bridge.compose_out import export_compose

        text, entries = export_compose(loaded.stacks, secret_sources=loaded.secret_sources)
        return text, entries
    documents = []
    for stack in loaded.stacks:
        values = secret_values(stack, env) if include_secret_values else None
        result = export_kubernetes(
            stack, secret_values=values, secret_sources=loaded.secret_sources.get(stack.name)
        )
        documents.extend(result.documents)
        report.extend(result.report)
    return yaml.safe_dump_all(documents, sort_keys=False), report


__all__ = ["export"]
