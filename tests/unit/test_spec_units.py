"""Durations, sizes, modes and CPUs as written in stack files."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podctl.spec.units import (
    format_duration,
    format_size,
    parse_cpus,
    parse_duration,
    parse_mode,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (2, 2.0),
        (0.25, 0.25),
        ("3", 3.0),
        (" 2s ", 2.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["2x", "", "s", "1m2", "2 s", "-1s", "1d", "ms"])
def test_parse_duration_rejects_with_a_hint(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_parse_duration_rejects_negative_and_bool() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="boolean"):
        parse_duration(True)
    with pytest.raises(ValueError, match="finite"):
        parse_duration(float("inf"))


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64Mi", 64 * 2**20),
        ("1Gi", 2**30),
        ("100M", 100_000_000),
        ("512k", 512_000),
        ("1Ki", 1024),
        ("1.5Gi", 1536 * 2**20),
        ("64MiB", 64 * 2**20),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_points_docker_spellings_to_the_right_unit() -> None:
    with pytest.raises(
        ValueError, match=r"unknown size unit `m` in `512m`; did you mean Mi or M\?"
    ):
        parse_size("512m")


@pytest.mark.parametrize("bad", ["x", "Mi", "1.5", "-1Mi", "1Zi", "1 Gi Gi"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    ("value", "mode"),
    [("0400", 0o400), (0o400, 0o400), (256, 0o400), ("400", 0o400), ("0o644", 0o644)],
)
def test_parse_mode(value: str | int, mode: int) -> None:
    assert parse_mode(value) == mode


@pytest.mark.parametrize("bad", ["0800", "rw", "", "77777", 0o17777, -1])
def test_parse_mode_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_mode(bad)


@pytest.mark.parametrize(
    ("value", "nano"),
    [(0.25, 250_000_000), (2, 2_000_000_000), ("0.5", 500_000_000), ("500m", 500_000_000)],
)
def test_parse_cpus(value: str | float, nano: int) -> None:
    assert parse_cpus(value) == nano


@pytest.mark.parametrize("bad", [0, -1, "abc", "0m", True])
def test_parse_cpus_rejects(bad: str | float) -> None:
    with pytest.raises(ValueError):
        parse_cpus(bad)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip_in_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == seconds


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_duration_round_trip_any_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**60))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"]),
)
def test_size_written_with_a_unit_parses_to_its_product(number: int, unit: str) -> None:
    factors = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20}
    factors |= {"Gi": 2**30, "Ti": 2**40}
    assert parse_size(f"{number}{unit}") == number * factors[unit]
