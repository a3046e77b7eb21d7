"""Back-off maths and how durations read."""

from __future__ import annotations

import pytest

from podctl.reconcile.backoff import crash_delay, effective_level, format_duration, pull_delay


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.5, "500ms"),
        (0.001, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (2.0, "2s"),
        (16.0, "16s"),
        (59.25, "59.25s"),
        (60.0, "1m"),
        (64.0, "1m4s"),
        (64.0002, "1m4s"),  # whole milliseconds: never `1.06667m`
        (90.5, "1m30.5s"),
        (256.0, "4m16s"),
        (300.0, "5m"),
        (3600.0, "1h"),
        (3630.0, "1h0m30s"),
        (3660.0, "1h1m"),
        (-2.0, "-2s"),
    ],
)
def test_format_duration_reads_like_go_and_kubernetes(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_every_crash_delay_prints_without_fractions() -> None:
    texts = [format_duration(crash_delay(level)) for level in range(10)]
    assert texts == ["1s", "2s", "4s", "8s", "16s", "32s", "1m4s", "2m8s", "4m16s", "5m"]


def test_backoff_level_resets_only_after_a_long_run() -> None:
    assert effective_level(5, 599.0) == 5
    assert effective_level(5, 600.0) == 0
    assert effective_level(5, None) == 5


def test_pull_retries_back_off_from_two_seconds() -> None:
    assert [pull_delay(a) for a in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert pull_delay(30) == 300.0
