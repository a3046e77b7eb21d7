"""Backoff maths: crash-loop restarts and image pull retries.

Like the kubelet, but starting at 1 s: 1, 2, 4, ... capped at 5 min, and the
level resets once a container has run for 10 min before exiting.
"""

from __future__ import annotations

from podctl import defaults


def crash_delay(level: int) -> float:
    """Delay before restarting a container that has crashed `level` times in a row before."""
    return float(min(defaults.BACKOFF_INITIAL_S * (2 ** min(level, 20)), defaults.BACKOFF_CAP_S))


def effective_level(level: int, ran_for_s: float | None) -> int:
    """A container that ran long enough before exiting is not crash-looping: start over."""
    if ran_for_s is not None and ran_for_s >= defaults.BACKOFF_RESET_AFTER_S:
        return 0
    return level


def pull_delay(attempts: int) -> float:
    """Delay before retrying a failed pull, after `attempts` failures."""
    exp = max(attempts - 1, 0)
    return float(
        min(defaults.PULL_BACKOFF_INITIAL_S * (2 ** min(exp, 20)), defaults.PULL_BACKOFF_CAP_S)
    )


def format_duration(seconds: float) -> str:
    """A duration as Go and Kubernetes print one, trailing zero units dropped:
    `500ms`, `2s`, `1.5s`, `1m4s`, `5m`, `1h0m30s`, `1h`. Whole milliseconds."""
    ms = round(seconds * 1000)
    if ms < 0:
        return "-" + format_duration(-ms / 1000)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    out = f"{hours}h" if hours else ""
    if minutes or (hours and rest):
        out += f"{minutes}m"
    if rest:
        out += f"{secs}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    return out
