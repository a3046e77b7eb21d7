"""Durations, sizes, file modes and CPU counts as people write them in stack files.

Each parser takes what YAML or TOML hands over (a string or a number) and
returns one plain unit: seconds (float), bytes (int), a mode (int), nano-CPUs
(int). Each raises ValueError with a message that can be shown as is after
`FILE:LINE:COL: field:`. Arithmetic is done in `Decimal` so `"1.1s"` is the
same float as `1.1` and `format_*` output parses back to the exact value.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
# One `<number><unit>` piece; a duration is one or more of them ("1m30s").
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")

# Kubernetes quantity suffixes: decimal (k, M, G, ...) and binary (Ki, Mi, Gi, ...).
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*?)B?")
# Docker's CLI writes `512m` / `1g` for binary units; in Kubernetes `m` means milli.
# Rather than guess, such suffixes are refused with a pointer to the right spelling.
_SIZE_HINTS = {"m": "Mi or M", "g": "Gi or G", "K": "Ki or k", "t": "Ti or T", "b": "a bare number"}

_NANO = 10**9


def _reject_bool(value: object, what: str) -> None:
    # bool is an int subclass: `replicas: true` must not silently mean 1.
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got a boolean")


def _finite_decimal(value: int | float, what: str) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite {what}, got {value}")
    # repr() of a float is its shortest round-tripping decimal form.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def parse_duration(value: str | int | float) -> float:
    """`"500ms"`, `"2s"`, `"1m"`, `"1h"`, `"1m30s"`; a bare number means seconds."""
    _reject_bool(value, "duration")
    if isinstance(value, int | float):
        total = _finite_decimal(value, "duration")
    elif isinstance(value, str):
        text = value.strip()
        total = Decimal(text) if _is_plain_number(text) else _duration_text(text)
    else:
        raise ValueError(f"expected a duration such as `2s`, got {type(value).__name__}")
    if total < 0:
        raise ValueError(f"duration must not be negative, got `{value}`")
    return float(total)


def _is_plain_number(text: str) -> bool:
    return re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text) is not None


def _duration_text(text: str) -> Decimal:
    pos = 0
    total = Decimal(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(
            f"invalid duration `{text}`: use a number with a unit "
            "(`500ms`, `2s`, `1m`, `1h`, `1m30s`) or a bare number of seconds"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest unit-suffixed form of `seconds` that `parse_duration` reads back exactly."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"cannot format duration {seconds}")
    rest = Decimal(repr(float(seconds)))
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest or not out:
        millis = rest * 1000
        if not out and rest < 1 and millis == millis.to_integral_value():
            out += f"{millis.to_integral_value()}ms"
        else:
            out += f"{_plain(rest)}s"
    return out


def _plain(d: Decimal) -> str:
    """A Decimal without exponent notation or trailing zeros."""
    return format(d.normalize(), "f")


def parse_size(value: str | int | float) -> int:
    """`"64Mi"`, `"1Gi"`, `"100M"`, `"512k"`; a bare integer means bytes."""
    _reject_bool(value, "size")
    if isinstance(value, int):
        number, unit = Decimal(value), ""
    elif isinstance(value, float):
        number, unit = _finite_decimal(value, "size"), ""
    elif isinstance(value, str):
        text = value.strip()
        match = _SIZE.fullmatch(text)
        if match is None:
            raise ValueError(
                f"invalid size `{value}`: use a number with a unit (`512k`, `100M`, `64Mi`, `1Gi`) "
                "or a bare number of bytes"
            )
        number, unit = Decimal(match.group(1)), match.group(2)
        if unit not in _SIZE_UNITS:
            hint = _SIZE_HINTS.get(unit)
            known = "k, M, G, T, P, Ki, Mi, Gi, Ti, Pi"
            raise ValueError(
                f"unknown size unit `{unit}` in `{value}`"
                + (f"; did you mean {hint}?" if hint else f" (known units: {known})")
            )
    else:
        raise ValueError(f"expected a size such as `64Mi`, got {type(value).__name__}")
    if number < 0:
        raise ValueError(f"size must not be negative, got `{value}`")
    total = number * _SIZE_UNITS[unit]
    if total != total.to_integral_value():
        raise ValueError(f"size `{value}` is not a whole number of bytes")
    return int(total)


def format_size(size: int) -> str:
    """The largest exact unit for `size` (binary units first): 67108864 -> `64Mi`."""
    if size < 0:
        raise ValueError(f"cannot format negative size {size}")
    if size == 0:
        return "0"
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki", "P", "T", "G", "M", "k"):
        factor = _SIZE_UNITS[unit]
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_mode(value: str | int) -> int:
    """A file mode. Strings are always octal (`"0400"`, `"400"`, `"0o400"`); ints are taken as is.

    YAML 1.1 already reads `0400` as octal 256, and TOML has `0o400`, so an int
    arriving here is the mode itself.
    """
    _reject_bool(value, "file mode")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower()
        text = text.removeprefix("0o")
        if not re.fullmatch(r"[0-7]{1,4}", text):
            raise ValueError(f"invalid file mode `{value}`: write it in octal, e.g. `0400`")
        mode = int(text, 8)
    else:
        raise ValueError(f"expected a file mode such as `0400`, got {type(value).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"file mode {mode:#o} is out of range (0 to 07777)")
    return mode


def parse_cpus(value: str | int | float) -> int:
    """CPUs as nano-CPUs (Docker's NanoCpus): `0.25`, `2`, `"0.5"`, or millicores `"500m"`."""
    _reject_bool(value, "CPU count")
    if isinstance(value, int | float):
        cpus = _finite_decimal(value, "CPU count")
    elif isinstance(value, str):
        text = value.strip()
        try:
            # Kubernetes-style millicores: "500m" is half a CPU.
            cpus = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
        except InvalidOperation:
            raise ValueError(
                f"invalid CPU count `{value}`: use a number (`0.5`) or millicores (`500m`)"
            ) from None
        if not cpus.is_finite():
            raise ValueError(f"invalid CPU count `{value}`")
    else:
        raise ValueError(f"expected a CPU count such as `0.5`, got {type(value).__name__}")
    nano = int((cpus * _NANO).to_integral_value())
    if nano <= 0:
        raise ValueError(f"CPU count must be greater than 0, got `{value}`")
    return nano
