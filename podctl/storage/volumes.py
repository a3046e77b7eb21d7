"""Pure helpers for volumes, bind mounts and tmpfs mounts: MountSpec -> MountBinding."""

from __future__ import annotations

from podctl import labels
from podctl.runtime.protocol import MountBinding
from podctl.spec.model import MountSpec, volume_docker_name

KIND_VOLUME = "volume"


def volume_binding(stack: str, mount: MountSpec) -> MountBinding:
    """A named Docker volume `<stack>_<name>` mounted at the mount's target."""
    _expect(mount, "volume")
    return MountBinding(
        type="volume",
        source=volume_docker_name(stack, mount.source),
        target=mount.target,
        read_only=mount.read_only,
    )


def bind_binding(mount: MountSpec) -> MountBinding:
    """A host path (already absolute and checked by the spec loader) bind-mounted."""
    _expect(mount, "bind")
    return MountBinding(
        type="bind", source=mount.source, target=mount.target, read_only=mount.read_only
    )


def tmpfs_binding(mount: MountSpec) -> MountBinding:
    _expect(mount, "tmpfs")
    return MountBinding(type="tmpfs", target=mount.target, read_only=mount.read_only)


def volume_labels(stack: str, name: str) -> dict[str, str]:
    """Labels of a stack volume: `down` finds it by stack, `--volumes` by kind."""
    return {labels.STACK: stack, labels.KIND: KIND_VOLUME, labels.VOLUME: name}


def _expect(mount: MountSpec, kind: str) -> None:
    if mount.kind != kind:
        raise ValueError(f"expected a {kind} mount, got {mount.kind} mount of {mount.source!r}")
