"""Volume, bind and tmpfs mounts map to runtime bindings."""

from __future__ import annotations

import pytest

from podctl import labels
from podctl.runtime.protocol import MountBinding
from podctl.spec.model import MountSpec
from podctl.storage.volumes import bind_binding, tmpfs_binding, volume_binding, volume_labels


def test_volume_binding_uses_the_stack_prefixed_docker_name() -> None:
    m = MountSpec(kind="volume", source="data", target="/data", read_only=True)
    assert volume_binding("shop", m) == MountBinding(
        type="volume", source="shop_data", target="/data", read_only=True
    )


def test_bind_binding_keeps_the_host_path() -> None:
    m = MountSpec(kind="bind", source="/srv/www", target="/www")
    assert bind_binding(m) == MountBinding(type="bind", source="/srv/www", target="/www")


def test_tmpfs_binding() -> None:
    m = MountSpec(kind="tmpfs", source="", target="/tmp")
    assert tmpfs_binding(m) == MountBinding(type="tmpfs", target="/tmp")


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        volume_binding("shop", MountSpec(kind="bind", source="/x", target="/x"))


def test_volume_labels() -> None:
    assert volume_labels("shop", "data") == {
        labels.STACK: "shop",
        labels.KIND: "volume",
        labels.VOLUME: "data",
    }
