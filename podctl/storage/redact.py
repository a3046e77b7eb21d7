"""Keeping secret values out of everything podctl prints.

The Redactor knows the secret values currently loaded and replaces each occurrence in a
text with `<secret:NAME sha256:abcd1234>` (name and short digest: enough to tell which
secret leaked where, nothing to learn the value from). Besides the raw value it matches
the forms a value takes on its way into text: without its trailing newline (files usually
end with one, env values do not), JSON-escaped and repr-escaped.

`RedactingFilter` applies it to log records; `install_log_redaction` attaches it to
handlers, where it sees records of every logger (a filter on a logger only sees records
logged to that very logger, not its children's).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import TYPE_CHECKING

from podctl.spec.digest import content_digest, short_digest
from podctl.storage.files import load_secret

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from podctl.spec.model import DesiredStack


def secret_ref(name: str, digest: str) -> str:
    """How a secret is shown in place of its value: `<secret:NAME sha256:abcd1234>`."""
    return f"<secret:{name} {short_digest(digest)}>"


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _text_forms(value: bytes) -> set[str]:
    """The ways `value` can appear in text."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("utf-8", "surrogateescape")
    forms = {text, text.strip(), text.rstrip("\r\n")}
    for t in list(forms):
        forms.add(json.dumps(t, ensure_ascii=False)[1:-1])
        forms.add(json.dumps(t)[1:-1])
        forms.add(repr(t)[1:-1])
    return {f for f in forms if f}


class Redactor:
    """Replaces known secret values in text. Thread-safe; `update` swaps the set atomically."""

    def __init__(
        self,
        secrets: Mapping[str, bytes | str] | None = None,
        *,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._bpattern: re.Pattern[bytes] | None = None
        self._refs: dict[str, str] = {}
        self._brefs: dict[bytes, bytes] = {}
        self.update(secrets or {}, digests=digests)

    def update(
        self, secrets: Mapping[str, bytes | str], *, digests: Mapping[str, str] | None = None
    ) -> None:
        """Replace the known values (name -> value); `digests` overrides computed digests."""
        refs: dict[str, str] = {}
        brefs: dict[bytes, bytes] = {}
        for name, value in secrets.items():
            raw = _as_bytes(value)
            if not raw.strip():
                continue  # an empty or blank value cannot be told apart from text
            digest = (digests or {}).get(name) or content_digest(raw)
            ref = secret_ref(name, digest)
            for form in _text_forms(raw):
                # With two secrets sharing a value, either name is a fine label.
                refs.setdefault(form, ref)
            brefs.setdefault(raw, ref.encode())
            stripped = raw.strip()
            if stripped != raw:
                brefs.setdefault(stripped, ref.encode())
        pattern = _alternation(refs) if refs else None
        bpattern = (
            re.compile(b"|".join(re.escape(v) for v in sorted(brefs, key=len, reverse=True)))
            if brefs
            else None
        )
        with self._lock:
            self._refs, self._pattern = refs, pattern
            self._brefs, self._bpattern = brefs, bpattern

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        """`text` with every occurrence of every known value replaced by its reference."""
        with self._lock:
            pattern, refs = self._pattern, self._refs
        if pattern is None or not text:
            return text
        return pattern.sub(lambda m: refs[m.group(0)], text)

    def redact_bytes(self, data: bytes) -> bytes:
        with self._lock:
            pattern, refs = self._bpattern, self._brefs
        if pattern is None or not data:
            return data
        return pattern.sub(lambda m: refs[m.group(0)], data)

    def contains_secret(self, text: str) -> bool:
        with self._lock:
            pattern = self._pattern
        return pattern is not None and pattern.search(text) is not None


def _alternation(refs: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so a value that contains another is replaced whole.
    return re.compile("|".join(re.escape(v) for v in sorted(refs, key=len, reverse=True)))


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, exception text and stack of every record it sees.

    The message is formatted here (args merged) so a secret passed as an argument is
    caught too; the record is changed in place and always let through.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


def install_log_redaction(
    redactor: Redactor, handlers: Iterable[logging.Handler] | None = None
) -> RedactingFilter:
    """Attach one RedactingFilter to `handlers` (default: the root logger's handlers).

    Call it after logging is configured; handlers added later need `addFilter` too.
    """
    flt = RedactingFilter(redactor)
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.addFilter(flt)
    return flt


def secret_values(stacks: Sequence[DesiredStack], environ: Mapping[str, str]) -> dict[str, bytes]:
    """Every secret value the stacks use, for the redactor (never printed)."""
    out: dict[str, bytes] = {}
    for st in stacks:
        for sec in st.secrets:
            try:
                out[f"{st.name}/{sec.name}"] = load_secret(sec, environ)
            except Exception:  # the loader already reported a missing source
                continue
    return out
