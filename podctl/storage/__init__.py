"""Storage: volumes, configs and secrets on disk, and the state directory."""

from __future__ import annotations

from podctl.spec.digest import content_digest, digest_matches, short_digest
from podctl.storage.errors import (
    DigestMismatch,
    SourceError,
    StateReadError,
    StateWriteError,
    StorageError,
)
from podctl.storage.files import (
    FileSet,
    MaterialisedFile,
    StackFiles,
    load_config,
    load_secret,
    read_config,
    read_secret,
)
from podctl.storage.history import RevisionHistory, RevisionRecord
from podctl.storage.paths import runtime_dir, socket_path, state_dir
from podctl.storage.redact import (
    RedactingFilter,
    Redactor,
    install_log_redaction,
    secret_ref,
)
from podctl.storage.statedir import StateDir
from podctl.storage.volumes import bind_binding, volume_binding, volume_labels

__all__ = [
    "DigestMismatch",
    "FileSet",
    "MaterialisedFile",
    "RedactingFilter",
    "Redactor",
    "RevisionHistory",
    "RevisionRecord",
    "SourceError",
    "StackFiles",
    "StateDir",
    "StateReadError",
    "StateWriteError",
    "StorageError",
    "bind_binding",
    "content_digest",
    "digest_matches",
    "install_log_redaction",
    "load_config",
    "load_secret",
    "read_config",
    "read_secret",
    "runtime_dir",
    "secret_ref",
    "short_digest",
    "socket_path",
    "state_dir",
    "volume_binding",
    "volume_labels",
]
