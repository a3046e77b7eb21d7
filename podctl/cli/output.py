"""Rendering rows as a table, JSON or YAML (`-o table|json|yaml`)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

if TYPE_CHECKING:
    from collections.abc import Sequence


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    wide = "wide"


def to_builtins(rows: Sequence[Any]) -> list[Any]:
    return [msgspec.to_builtins(r) for r in rows]


def print_data(rows: Sequence[Any], fmt: Format, columns: Sequence[tuple[str, str]]) -> None:
    """Print rows; `columns` are (header, field) pairs for the table form."""
    data = to_builtins(rows)
    if fmt is Format.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")
        return
    if fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        return
    # rich costs ~20 ms to import: only the table form needs it (`run` never does).
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for item in data:
        table.add_row(*(_cell(item.get(field)) for _, field in columns))
    Console(soft_wrap=True, width=200 if not sys.stdout.isatty() else None).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
