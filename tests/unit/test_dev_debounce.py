"""The sliding quiet window, on an injected clock."""

from __future__ import annotations

from podctl.dev.debounce import Debouncer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batch_is_taken_after_the_quiet_window() -> None:
    clock = Clock()
    d = Debouncer(window_s=0.05, max_wait_s=1.0, clock=clock)
    assert d.due() is None and d.take() is None
    d.add(["/a"])
    assert d.due() == 100.05
    clock.now = 100.04
    assert d.take() is None
    clock.now = 100.05
    assert d.take() == {"/a"}
    assert not d.pending and d.take() is None


def test_each_event_slides_the_window() -> None:
    clock = Clock()
    d = Debouncer(window_s=0.05, max_wait_s=1.0, clock=clock)
    for i in range(5):  # an editor's write, chmod, rename... 30 ms apart
        d.add([f"/f{i}", "/same"])
        clock.now += 0.03
        assert d.take() is None
    clock.now += 0.02
    assert d.take() == {"/f0", "/f1", "/f2", "/f3", "/f4", "/same"}


def test_a_steady_writer_is_still_synced_within_max_wait() -> None:
    clock = Clock()
    d = Debouncer(window_s=0.05, max_wait_s=0.2, clock=clock)
    taken = []
    for _ in range(20):  # an event every 20 ms, for ever
        d.add(["/log"])
        clock.now += 0.02
        batch = d.take()
        if batch:
            taken.append(round(clock.now - 100.0, 2))
    assert taken and taken[0] <= 0.22


def test_window_is_at_most_100ms_by_default() -> None:
    d = Debouncer(clock=Clock())
    assert d.window_s <= 0.1
