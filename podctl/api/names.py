"""Resolve what a user types as a pod replica name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from podctl.reconcile.steps import ReplicaStatus


def find_replica(status: Sequence[ReplicaStatus], name: str) -> ReplicaStatus | None:
    """Resolve what a user types: the container name, `pod-N`, `stack/pod-N`, or an id prefix.

    A short name that matches replicas of several stacks is refused (LookupError)
    rather than guessed: `podctl exec web-0 -- rm ...` must not hit another stack.
    """
    stack = None
    short = name
    if "/" in name:
        stack, short = name.split("/", 1)
    candidates = [s for s in status if stack is None or s.stack == stack]
    for s in candidates:
        if s.name == short:
            return s
    matches = [s for s in candidates if f"{s.pod}-{s.replica}" == short]
    if not matches and len(short) >= 4:
        matches = [s for s in candidates if s.container_id and s.container_id.startswith(short)]
    stacks = sorted({s.stack for s in matches})
    if len(stacks) > 1:
        raise LookupError(
            f"{name!r} is ambiguous: it exists in stacks {', '.join(stacks)}; "
            f"say {stacks[0]}/{short}"
        )
    if not matches:
        return None
    # During a roll two containers share a slot: prefer the ready, then the newest.
    return max(matches, key=lambda s: (s.ready, s.container_id is not None, s.started_at or 0))
