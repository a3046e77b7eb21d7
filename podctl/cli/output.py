"""Rendering rows as a table, JSON or YAML (`-o table|json|yaml`)."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

from podctl.spec.errors import escape_control

if TYPE_CHECKING:
    from collections.abc import Sequence


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    wide = "wide"


# What JSON leaves raw but a terminal may act on: DEL, C1 controls, bidi controls.
# They can only occur inside JSON strings, where a \u escape means the same.
_JSON_RAW_CONTROL = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def json_text(data: Any) -> str:
    """Indented JSON of `data`, every control character escaped (`\\u001b`)."""
    text = msgspec.json.format(msgspec.json.encode(data), indent=2).decode()
    return _JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def to_builtins(rows: Sequence[Any]) -> list[Any]:
    return [msgspec.to_builtins(r) for r in rows]


def print_data(rows: Sequence[Any], fmt: Format, columns: Sequence[tuple[str, str]]) -> None:
    """Print rows; `columns` are (header, field) pairs for the table form."""
    data = to_builtins(rows)
    if fmt is Format.json:
        sys.stdout.write(json_text(data) + "\n")
        return
    if fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        return
    # rich costs ~20 ms to import: only the table form needs it (`run` never does).
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    now = time.time()
    for item in data:
        if isinstance(item, dict) and "age" not in item:
            started = item.get("started_at")
            item["age"] = age(now - started) if isinstance(started, (int, float)) else None
        # Text(), not a str: a cell is data, and `[red]` in a name is not rich markup.
        table.add_row(*(Text(safe(_cell(item.get(field)))) for _, field in columns))
    Console(soft_wrap=True, width=200 if not sys.stdout.isatty() else None).print(table)


def age(seconds: float) -> str:
    """kubectl's short ages: 42s, 3m12s, 5h3m, 2d4h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


# Fields holding epoch seconds in describe output; shown as local ISO times.
_TIME_FIELDS = ("started_at", "finished_at", "time", "last_restart_at", "since", "at")


def local_times(data: Any) -> Any:
    """`data` with epoch-second fields (`started_at`, `time`, ...) as local ISO 8601 times."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if (
                isinstance(k, str)
                and (k in _TIME_FIELDS or k.endswith("_at"))
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and v > 0
            ):
                out[k] = datetime.fromtimestamp(v).astimezone().isoformat(timespec="seconds")
            else:
                out[k] = local_times(v)
        return out
    if isinstance(data, list):
        return [local_times(v) for v in data]
    return data


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


def safe(text: str) -> str:
    """One line of text for the terminal: control characters escaped (ESC -> `\\x1b`).

    Names, messages and events can carry text from stack files or containers;
    written raw, an escape sequence in them would drive the user's terminal.
    JSON and YAML output escape control characters themselves.
    """
    return escape_control(text)


def err(message: str) -> None:
    """Write `message` to stderr; its control characters are escaped, its line breaks kept."""
    lines = message.rstrip("\n").split("\n")
    sys.stderr.write("\n".join(safe(line) for line in lines) + "\n")
