"""Log lines for a terminal, a file, or systemd's journal: `--log-format text|json`.

One record is one line, always: newlines inside a message or traceback are written as
the two characters `\\n`, because journald (like most collectors) starts a new entry at
every newline.

Under systemd, stderr is a stream to journald and `$JOURNAL_STREAM` holds its
`device:inode`. When it matches our stderr, each line starts with `<N>`, the syslog
priority that journald strips and records (sd-daemon(3)): `journalctl -p warning` then
works, and journald adds the timestamp itself. Colours only on a terminal, and never
with $NO_COLOR set.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from collections.abc import Mapping

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

ENV_JOURNAL_STREAM = "JOURNAL_STREAM"

# syslog priorities (sd-daemon.h: SD_ERR "<3>" ...), by Python level.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7

_COLOURS = {
    logging.CRITICAL: "\x1b[1;31m",
    logging.ERROR: "\x1b[31m",
    logging.WARNING: "\x1b[33m",
    logging.DEBUG: "\x1b[2m",
}
_RESET = "\x1b[0m"


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a Python log level (CRITICAL 2 ... DEBUG 7)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return DEBUG_PRIORITY


def journal_stream_matches(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd named in $JOURNAL_STREAM.

    Comparing device and inode tells "stderr goes to the journal" from "the variable was
    inherited but stderr was redirected" (sd_journal_stream_fd's advice).
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_JOURNAL_STREAM, "")
    dev, sep, ino = raw.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message` on one line; `<N>LEVEL LOGGER: message` for journald."""

    def __init__(self, journal: bool = False, colour: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self.colour = colour and not journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extra = _exception_text(self, record)
        if extra:
            message = f"{message}\n{extra}"
        level = record.levelname
        if self.colour and record.levelno in _COLOURS:
            level = f"{_COLOURS[record.levelno]}{level}{_RESET}"
        body = _one_line(f"{level} {record.name}: {message}")
        if self.journal:
            return f"<{syslog_priority(record.levelno)}>{body}"
        return f"{self.formatTime(record)} {body}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message[, exc]."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        doc: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = _exception_text(self, record)
        if extra:
            doc["exc"] = extra
        # json.dumps escapes control characters, so the line has no raw newline.
        line = json.dumps(doc, ensure_ascii=False, default=str)
        if self.journal:
            return f"<{syslog_priority(record.levelno)}>{line}"
        return line


def _exception_text(fmt: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        parts.append(fmt.formatException(record.exc_info))
    if record.stack_info:
        parts.append(fmt.formatStack(record.stack_info))
    return "\n".join(parts)


def make_formatter(
    log_format: LogFormat, stream: TextIO, environ: Mapping[str, str] | None = None
) -> logging.Formatter:
    """The formatter for `--log-format` writing to `stream` (usually sys.stderr)."""
    env = os.environ if environ is None else environ
    journal = journal_stream_matches(stream, env)
    if log_format == "json":
        return JsonFormatter(journal=journal)
    if log_format != "text":
        raise ValueError(f"unknown log format {log_format!r}: use text or json")
    isatty = getattr(stream, "isatty", None)
    colour = bool(isatty and isatty()) and not env.get("NO_COLOR")
    return TextFormatter(journal=journal, colour=colour)


def make_handler(
    log_format: LogFormat,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter for `log_format`."""
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(make_formatter(log_format, out, environ))
    return handler
