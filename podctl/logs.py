"""Logging for `podctl run`: one format, quiet libraries, secrets redacted on every handler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podctl.storage.redact import Redactor


def configure_logging(verbose: bool, redactor: Redactor | None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    if redactor is not None:
        from podctl.storage.redact import install_log_redaction

        install_log_redaction(redactor)
