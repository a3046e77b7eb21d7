"""Logging for `podctl run`: `--log-format text|json`, one line per record, quiet
libraries, secrets redacted on every handler.

The formats (`podctl.host.journal`): `text` is `TIME LEVEL LOGGER: message`, coloured
only when stderr is a terminal (and $NO_COLOR is unset); `json` is one object per line.
Under systemd, when stderr is the journal stream ($JOURNAL_STREAM), each line starts with
its `<N>` syslog priority and the timestamp is left to journald.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from podctl.host.journal import LOG_FORMATS, make_handler

if TYPE_CHECKING:
    from podctl.storage.redact import Redactor

__all__ = ["LOG_FORMATS", "configure_logging"]


def configure_logging(verbose: bool, redactor: Redactor | None, log_format: str = "text") -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: use {' or '.join(LOG_FORMATS)}")
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, handlers=[make_handler(log_format)], force=True)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    if redactor is not None:
        from podctl.storage.redact import install_log_redaction

        install_log_redaction(redactor)
