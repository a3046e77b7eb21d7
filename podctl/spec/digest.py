"""Content digests of configs and secrets: the one place podctl hashes content.

A digest names content without showing it. Two forms exist, both sha256:
- `source_digest(data)`: the first 12 hex digits, what a stack's configs and
  secrets carry (`DesiredConfig.digest`). It goes into each pod's revision hash
  and into the materialised file names, so it must never change form: that would
  roll every pod of every stack.
- `content_digest(data)`: `sha256:<hex>`, the full form (redaction, checks).
Any of them may be shown as `short_digest()` (`sha256:abcd1234`) and checked with
`digest_matches()`, which accepts a prefix. The content itself is never shown.
"""

from __future__ import annotations

import hashlib
import re

ALGORITHM = "sha256"
SHORT_LEN = 8

_HEX = re.compile(r"^[0-9a-f]+$")
# A digest shorter than this is too weak to detect a change reliably.
_MIN_HEX = 8


SOURCE_DIGEST_LEN = 12


def source_digest(data: bytes) -> str:
    """The first 12 hex digits of sha256(data): a config's or secret's digest in a stack."""
    return hashlib.sha256(data).hexdigest()[:SOURCE_DIGEST_LEN]


def content_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def split_digest(digest: str) -> tuple[str, str] | None:
    """(`algorithm`, `hex`) of `sha256:<hex>` or a bare hex string; None if neither."""
    algo, sep, value = digest.partition(":")
    if not sep:
        algo, value = ALGORITHM, digest
    value = value.lower()
    if algo not in hashlib.algorithms_guaranteed or len(value) < _MIN_HEX:
        return None
    if not _HEX.match(value):
        return None
    return algo, value


def digest_matches(data: bytes, digest: str) -> bool | None:
    """Whether `data` has `digest` (a prefix of the hex is accepted); None if unparseable."""
    parts = split_digest(digest)
    if parts is None:
        return None
    algo, value = parts
    return hashlib.new(algo, data).hexdigest().startswith(value)


def digest_token(digest: str) -> str:
    """A file-name-safe token for `digest`: its hex, or a hash of it when not a hex digest."""
    parts = split_digest(digest)
    if parts is not None:
        return parts[1]
    return hashlib.sha256(digest.encode()).hexdigest()[:32]


def short_digest(digest: str) -> str:
    """`sha256:abcd1234`: what podctl shows for a secret or config."""
    parts = split_digest(digest)
    if parts is None:
        return f"{ALGORITHM}:{digest_token(digest)[:SHORT_LEN]}"
    return f"{parts[0]}:{parts[1][:SHORT_LEN]}"
