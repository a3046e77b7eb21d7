"""Rollout maths and decisions: budgets, availability, progress, failure, rollback. Pure.

The planner (`plan.py`) measures each pod (`Progress`) against its target
revision (`target_of`) and asks `decide()` what the rollout's record becomes;
changes come back as records to write (`RecordRollout` steps), so what a
rollout decided survives a podctl restart in the Ledger.

Rules (each one golden-tested in tests/unit/test_rollout*.py):

- **Target.** The pod's revision in the stack file, unless an override holds
  (an automatic rollback or `rollout undo`): then the override's revision and
  template. An override, and a pause, hold while the pod's revision in the file
  is the one they were made under (`file_revision`); an edit of the pod's entry
  that changes its revision releases them. (Edits to `replicas` or `rollout:`
  alone do not change the revision, so they do not release them.)
- **Budget.** `max_surge` and `max_unavailable` are counts or percentages of
  `replicas`; as in Kubernetes a surge percentage rounds up and an unavailable
  one rounds down. Both 0 is a validation error; percentages can still resolve
  to 0 and 0 for a small pod (`max_surge: 0, max_unavailable: 10%` of 3): the
  planner then surges by 1 (Kubernetes makes `max_unavailable` 1 instead; a
  surge keeps the ready floor, which is podctl's promise). `recreate` ignores both.
- **Available.** A replica is available once it has been ready for `min_ready`
  without a break: `ready_since` (from the prober), its latest start (a restart
  starts over) and the latest connect failure the proxy saw to it
  (`backend_failures`) all reset the clock. With `min_ready: 0s`, ready is available.
- **Floor and ceiling.** A rolling update keeps the pod's available replicas at
  `replicas - max_unavailable` or more (so its ready replicas too) and its
  containers at `replicas + max_surge` or fewer; an old replica is removed only
  once its slot's new replica is available (or when it is not ready itself: its
  probes answered and it failed, or it is not running. One no probe has answered
  for yet, as every replica is just after a podctl restart, waits for its first
  result instead, and counts as unavailable until then). Each replica is probed
  with its own revision's probes (Controller._probe_targets).
- **Recreate.** Every container of another revision is removed first (those
  still stopping included); new ones are created only once none is left.
- **Progress.** A rollout starts when the target differs from the revision the
  pod's record has (`RolloutStarted`) and completes when every replica slot
  has an available container of the target and no container of another revision
  is left (`RolloutComplete`). An edit during a rollout starts a new one to the
  newest revision; older revisions are rolled like any old one.
- **Failure.** A progressing rollout has failed (`RolloutFailed`) when either
  1. it has not completed `progress_deadline` after it started (or was resumed), or
  2. every new replica (of the target revision, in a replica slot; there is at
     least one) has been *failing* without a break for longer than
     `min(progress_deadline, 3 x BACKOFF_CAP_S)`: 3 x the crash-loop back-off cap
     (5 min), the delay a crash loop reaches and then keeps. A replica is failing
     when it is not ready and either it has exited and its restart policy wants it
     back (crash loop), or it has been restarted at least once, or a probe
     (startup, liveness, readiness) has failed on its current run. The start
     of the streak is kept in the record (`failing_since`); any pass that sees one
     new replica not failing ends the streak. As rule 2's window is never longer
     than the deadline and a streak lies within its rollout, rule 2 decides first
     only when `progress_deadline` is longer than 15 min, and it is tracked only then.
- **Rollback.** On failure with `auto_rollback`, the pod returns to the most
  recent fully available revision that is not the failed one, has not failed
  itself, and has a known template (`RolloutRecord.available`, at most the stack's
  `history`) that can still run in the stack (`cannot_run`: its configs, secrets
  and volumes are still there; configs and secrets run with their current
  content, and an image rebuilt under the same tag runs as rebuilt): an override
  `rollback` holds it there (`RolledBack`, whose message says "rolled back" and
  why) and `rollout status` says `rolled-back`. Without `auto_rollback`, or with
  no such revision, the rollout stays `failed`.
- **Hold.** A paused pod, and a failed rollout that was not rolled back, get no
  replacement steps (no surge, no removal of an old replica): restarts, kills
  and missing replicas are still looked after. So does an override that can no
  longer run (`cannot_run`: the stack lost a config it needs), and it creates no
  replica either: the replicas that run stay until the file changes. A failed revision is not rolled
  out again until the pod's entry in the file changes.
- A pod's first start (no record, no container of another revision) is not a
  rollout: nothing is recorded; `rollout status` reports it from what runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from podctl import defaults
from podctl.reconcile.backoff import format_duration
from podctl.reconcile.ledger import AvailableRevision, Override, Pause, RolloutRecord, rollout_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.reconcile.ledger import Ledger
    from podctl.reconcile.steps import RolloutState
    from podctl.spec.model import ContainerTemplate, DesiredPod, DesiredStack, RolloutSpec

CRASH_WINDOW_CAPS = 3  # rule 2: this many back-off caps


def short(revision: str | None) -> str:
    return (revision or "?")[:6]


def rollout_budget(spec: RolloutSpec, replicas: int) -> tuple[int, int]:
    """(max_surge, max_unavailable) as counts. Percentages round as in Kubernetes:
    surge up, unavailable down. Resolved 0 and 0 (only percentages can, as a file's
    literal 0 and 0 is rejected) would deadlock: the surge becomes 1."""

    def resolve(value: int | str, round_up: bool) -> int:
        if isinstance(value, int):
            return max(value, 0)
        pct = float(value.rstrip("%")) / 100.0 * replicas
        return max(math.ceil(pct) if round_up else math.floor(pct), 0)

    surge = resolve(spec.max_surge, True)
    unavailable = resolve(spec.max_unavailable, False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


def available_from(
    ready_since: float | None, started_at: float | None, last_failure: float | None
) -> float:
    """When a ready replica's `min_ready` clock started: the latest of its being ready,
    its start (a restart starts over) and a proxy connect failure to it."""
    return max(
        ready_since if ready_since is not None else -math.inf,
        started_at if started_at is not None else -math.inf,
        last_failure if last_failure is not None else -math.inf,
    )


def crash_window(spec: RolloutSpec) -> float:
    """Failure rule 2's window: min(progress_deadline, 3 x the back-off cap)."""
    return min(spec.progress_deadline_s, CRASH_WINDOW_CAPS * defaults.BACKOFF_CAP_S)


def tracks_failing_streak(spec: RolloutSpec) -> bool:
    """Rule 2 can decide before the deadline only when its window is shorter."""
    return crash_window(spec) < spec.progress_deadline_s


@dataclass(frozen=True)
class Target:
    """What a pod should run this pass."""

    revision: str
    template: ContainerTemplate
    override: Override | None = None
    paused: Pause | None = None
    released: bool = False  # the record's override or pause no longer holds


def target_of(rec: RolloutRecord | None, pod: DesiredPod) -> Target:
    if rec is None:
        return Target(pod.revision, pod.template)
    ov = rec.override if rec.override and rec.override.file_revision == pod.revision else None
    pause = rec.paused if rec.paused and rec.paused.file_revision == pod.revision else None
    released = (rec.override is not None and ov is None) or (
        rec.paused is not None and pause is None
    )
    if ov is not None:
        return Target(ov.revision, ov.template, ov, pause, released)
    return Target(pod.revision, pod.template, None, pause, released)


@dataclass
class Progress:
    """One pass's measure of a pod against its target revision."""

    desired: int
    new_total: int = 0  # containers of the target revision in replica slots
    new_ready: int = 0  # slots with a ready one
    new_available: int = 0  # slots with an available one
    new_failing: int = 0  # containers of the target revision that are failing
    failing_reason: str = ""  # the first failing one's reason
    old_remaining: int = 0  # containers of other revisions, those being removed included
    # revision -> (containers, ready ones): the running revision when no record says
    old_revisions: dict[str, list[int]] = field(default_factory=dict)
    next_available_at: float | None = None  # when a ready new replica becomes available

    @property
    def done(self) -> bool:
        return self.old_remaining == 0 and self.new_available >= self.desired


RecordChange = tuple[RolloutRecord, str, str]  # record, event reason ("" none), message


@dataclass
class Decision:
    records: list[RecordChange] = field(default_factory=list)
    record: RolloutRecord | None = None  # the record as this pass leaves it
    rollback: Override | None = None  # the pod returns to this revision from now
    hold: bool = False  # no replacement steps
    state: RolloutState = "progressing"
    message: str = ""
    deadline_at: float | None = None
    wake_at: list[float] = field(default_factory=list)


def _adopted(progress: Progress, templates: Mapping[str, ContainerTemplate]) -> AvailableRevision:
    """With no record, the revision that was running: the old one with most ready
    replicas, taken as fully available when every container of it is ready."""
    best = max(progress.old_revisions.items(), key=lambda kv: (kv[1][1], kv[0]))
    revision, (count, ready) = best
    return AvailableRevision(
        revision=revision, template=templates.get(revision) if ready == count else None, at=0.0
    )


def _append_available(
    seq: tuple[AvailableRevision, ...], entry: AvailableRevision, limit: int
) -> tuple[AvailableRevision, ...]:
    kept = (*(a for a in seq if a.revision != entry.revision), entry)
    return kept[-max(limit, 1) :]


def rollback_target(
    rec: RolloutRecord, failing: str, stack: DesiredStack | None = None
) -> AvailableRevision | None:
    """The most recent fully available revision that is neither `failing` nor failed,
    with a template to run (in `stack` as it is now, when given: see `cannot_run`)."""
    for a in reversed(rec.available):
        if a.revision == failing or a.revision in rec.failed or a.template is None:
            continue
        if stack is not None and cannot_run(a.template, stack) is not None:
            continue
        return a
    return None


def cannot_run(template: ContainerTemplate, stack: DesiredStack) -> str | None:
    """Why an override's template (an older revision) cannot run in `stack` as it is
    now, or None when it can.

    Its configs, secrets and volumes must still be in the stack, and each config or
    secret mount must be one that a pod of the stack mounts the same way (mode,
    owner): only those files are materialised. A config or secret runs with its
    content as the stack has it now, not as it was when the revision was current.
    """
    configs = {c.name for c in stack.configs}
    secrets = {s.name for s in stack.secrets}
    volumes = {v.name for v in stack.volumes}
    for ref in template.env_from:
        if ref.source not in (configs if ref.kind == "config" else secrets):
            return f"{ref.kind} {ref.source} (env {ref.name}) is no longer in the stack"
    materialised: set[tuple[str, str, int | None, int | None, int | None]] | None = None
    for m in template.mounts:
        if m.kind == "volume" and m.source not in volumes:
            return f"volume {m.source} is no longer in the stack"
        if m.kind not in ("config", "secret"):
            continue
        if m.source not in (configs if m.kind == "config" else secrets):
            return f"{m.kind} {m.source} is no longer in the stack"
        if materialised is None:
            materialised = {
                (x.kind, x.source, x.mode, x.uid, x.gid)
                for p in stack.pods
                for x in p.template.mounts
                if x.kind in ("config", "secret")
            }
        if (m.kind, m.source, m.mode, m.uid, m.gid) not in materialised:
            return f"no pod of the stack mounts {m.kind} {m.source} with that mode and owner now"
    return None


def decide(
    rec: RolloutRecord | None,
    pod: DesiredPod,
    target: Target,
    progress: Progress,
    now: float,
    *,
    history: int,
    templates: Mapping[str, ContainerTemplate],
    stack: DesiredStack | None = None,
) -> Decision:
    """What the pod's rollout record becomes this pass (see the module's rules)."""
    spec = pod.rollout
    d = Decision(record=rec)
    if rec is None or rec.revision != target.revision:
        if rec is None and progress.old_remaining == 0:
            d.state = "complete" if progress.done else "progressing"
            return d  # a first start: not a rollout
        available: tuple[AvailableRevision, ...]
        failed: tuple[str, ...]
        from_rev: str | None
        if rec is None:
            before = _adopted(progress, templates)
            available, failed = (before,), ()
            from_rev, note = before.revision, ""
        else:
            available, failed = rec.available, rec.failed
            superseded = rec.status == "progressing" and rec.revision != target.revision
            from_rev = rec.from_revision if superseded else rec.revision
            note = f"; supersedes {short(rec.revision)}" if superseded else ""
        if target.override is not None and target.override.kind == "undo":
            note += "; undo"
        rec = RolloutRecord(
            revision=target.revision,
            file_revision=pod.revision,
            started_at=now,
            from_revision=from_rev,
            available=available,
            failed=failed,
            override=target.override,
            paused=target.paused,
        )
        msg = f"rolling out revision {short(target.revision)} (from {short(from_rev)}{note})"
        d.records.append((rec, "RolloutStarted", msg))
    elif target.released:
        rec = msgspec.structs.replace(
            rec, override=target.override, paused=target.paused, file_revision=pod.revision
        )
        d.records.append((rec, "", "override released: the pod's entry in the file changed"))
    d.record = rec
    rolled_back = rec.override is not None and rec.override.kind == "rollback"
    d.state = "rolled-back" if rolled_back else rec.status
    d.message = rec.override.reason if rolled_back and rec.override else rec.message

    if rec.paused is not None:
        d.hold, d.state = True, "paused"
        d.message = f"paused at {format_duration(max(now - rec.paused.at, 0.0))} ago"
        return d
    if rec.status == "failed":
        d.hold = True
        return d
    if rec.status == "complete":
        return d

    if progress.done:
        took = format_duration(max(now - rec.started_at, 0.0))
        msg = (
            f"revision {short(rec.revision)} fully available"
            f" ({progress.new_available}/{progress.desired}) after {took}"
        )
        entry = AvailableRevision(revision=rec.revision, template=target.template, at=now)
        rec = msgspec.structs.replace(
            rec,
            status="complete",
            finished_at=now,
            message=msg,
            available=_append_available(rec.available, entry, history),
            failed=tuple(f for f in rec.failed if f != rec.revision),
            failing_since=None,
        )
        d.records.append((rec, "RolloutComplete", msg))
        d.record = rec
        if not rolled_back:
            d.state, d.message = "complete", msg
        return d

    d.deadline_at = rec.started_at + spec.progress_deadline_s
    why: str | None = None
    if now >= d.deadline_at:
        why = (
            f"not fully available within {format_duration(spec.progress_deadline_s)}"
            f" ({progress.new_available}/{progress.desired} available): ProgressDeadlineExceeded"
        )
    elif tracks_failing_streak(spec):
        all_failing = progress.new_total > 0 and progress.new_failing == progress.new_total
        if all_failing:
            since = rec.failing_since if rec.failing_since is not None else now
            if rec.failing_since is None:
                rec = msgspec.structs.replace(rec, failing_since=now)
                d.records.append((rec, "", "every new replica is failing"))
            window = crash_window(spec)
            if now - since >= window:
                why = (
                    f"every new replica failing for {format_duration(now - since)}:"
                    f" {progress.failing_reason}"
                )
            else:
                d.wake_at.append(since + window)
        elif rec.failing_since is not None:
            rec = msgspec.structs.replace(rec, failing_since=None)
            d.records.append((rec, "", "a new replica is no longer failing"))
    d.record = rec
    if why is None:
        d.wake_at.append(d.deadline_at)
        if progress.next_available_at is not None:
            d.wake_at.append(progress.next_available_at)
        if not rolled_back:
            d.message = (
                f"{progress.new_available} of {progress.desired} new replicas available,"
                f" {progress.old_remaining} old remaining"
            )
        return d

    failed_rev = rec.revision
    failed_now = (*(f for f in rec.failed if f != failed_rev), failed_rev)
    back = rollback_target(msgspec.structs.replace(rec, failed=failed_now), failed_rev, stack)
    failed_msg = f"revision {short(failed_rev)} {why}"
    if spec.auto_rollback and back is not None and back.template is not None:
        failed_rec = msgspec.structs.replace(
            rec, status="failed", finished_at=now, message=failed_msg, failed=failed_now
        )
        d.records.append((failed_rec, "RolloutFailed", failed_msg))
        reason = f"rolled back to revision {short(back.revision)}: {failed_msg}"
        override = Override(
            kind="rollback",
            revision=back.revision,
            template=back.template,
            file_revision=pod.revision,
            at=now,
            reason=reason,
            from_revision=failed_rev,
        )
        rec = RolloutRecord(
            revision=back.revision,
            file_revision=pod.revision,
            started_at=now,
            from_revision=failed_rev,
            available=rec.available,
            failed=failed_now,
            override=override,
        )
        d.records.append((rec, "RolledBack", reason))
        d.rollback, d.record = override, rec
        d.state, d.message, d.deadline_at = "rolled-back", reason, None
        return d
    not_back = "auto_rollback is off" if not spec.auto_rollback else "no fully available revision"
    failed_msg += f"; not rolled back: {not_back}"
    rec = msgspec.structs.replace(
        rec,
        status="failed",
        finished_at=now,
        message=failed_msg,
        failed=failed_now,
        failing_since=None,
    )
    d.records.append((rec, "RolloutFailed", failed_msg))
    d.record, d.hold, d.state, d.message, d.deadline_at = rec, True, "failed", failed_msg, None
    return d


# -- what the verbs change (the lead's `rollout pause|resume|undo`) ---------------


def pause(ledger: Ledger, stack: str, pod: DesiredPod, now: float) -> RolloutRecord:
    """`rollout pause`: holds until `resume` or a change of the pod's entry in the file."""
    key = rollout_key(stack, pod.name)
    rec = ledger.rollouts.get(key) or RolloutRecord(
        revision=pod.revision, file_revision=pod.revision, started_at=now
    )
    rec = msgspec.structs.replace(rec, paused=Pause(file_revision=pod.revision, at=now))
    ledger.rollouts[key] = rec
    return rec


def resume(ledger: Ledger, stack: str, pod: str, now: float) -> RolloutRecord | None:
    """`rollout resume`: a progressing rollout's deadline runs again from now."""
    key = rollout_key(stack, pod)
    rec = ledger.rollouts.get(key)
    if rec is None or rec.paused is None:
        return rec
    started = now if rec.status == "progressing" else rec.started_at
    rec = msgspec.structs.replace(rec, paused=None, started_at=started, failing_since=None)
    ledger.rollouts[key] = rec
    return rec


def undo_target(
    rec: RolloutRecord | None, current: str, stack: DesiredStack | None = None
) -> AvailableRevision | None:
    """`rollout undo` without `--to-revision`: the last fully available revision before
    `current` (the one running now), failed ones skipped (and, given `stack`, those
    that cannot run in it now: `cannot_run`)."""
    return None if rec is None else rollback_target(rec, current, stack)


def undo(
    ledger: Ledger,
    stack: str,
    pod: DesiredPod,
    *,
    revision: str,
    template: ContainerTemplate,
    now: float,
    reason: str = "rollout undo",
) -> RolloutRecord:
    """`rollout undo`: run `revision` until the pod's entry in the file changes.

    With `--to-revision R` the template comes from the revision history
    (storage.history); without, from `undo_target()`. Undoing back to the file's
    own revision just drops the override.
    """
    key = rollout_key(stack, pod.name)
    current = ledger.rollouts.get(key)
    base = current or RolloutRecord(
        revision=pod.revision, file_revision=pod.revision, started_at=now, status="complete"
    )
    override = None
    if revision != pod.revision:
        override = Override(
            kind="undo",
            revision=revision,
            template=template,
            file_revision=pod.revision,
            at=now,
            reason=reason,
            from_revision=base.revision,
        )
    rec = msgspec.structs.replace(base, override=override)
    ledger.rollouts[key] = rec
    return rec
