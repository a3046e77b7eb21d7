"""The observed snapshot's indices agree with the snapshot."""

from __future__ import annotations

from podctl.reconcile.observed import ObservedState
from podctl.runtime.protocol import ContainerInfo, NetworkInfo
from tests.unit.planbuild import container, observed


def test_containers_indexed_by_stack_and_pod_in_snapshot_order() -> None:
    a0, b0, a1 = container("a", 0), container("b", 0), container("a", 1)
    other = container("a", 0, stack="other")
    stray = ContainerInfo(id="x", name="x", labels={}, state="running", image="busybox:1.36")
    obs = observed(a0, other, b0, stray, a1)
    assert obs.stack_containers("shop") == [a0, b0, a1]
    assert obs.pod_containers("shop", "a") == (a0, a1)
    assert obs.pod_containers("other", "a") == (other,)
    assert obs.pod_containers("shop", "c") == ()
    assert obs.stack("none").containers == ()
    assert obs.container_names == {c.name for c in (a0, other, b0, stray, a1)}


def test_networks_and_volumes_by_name() -> None:
    n1 = NetworkInfo(id="1", name="podctl_shop", labels={})
    n2 = NetworkInfo(id="2", name="podctl_shop", labels={})
    obs = ObservedState(networks=(n1, n2))
    assert obs.network("podctl_shop") is n1  # the first, as a scan finds it
    assert obs.network("nope") is None
    assert obs.volume("shop_data") is None


def test_index_is_not_part_of_equality() -> None:
    a, b = observed(container("web", 0)), observed(container("web", 0))
    assert a.stack_containers("shop")  # a indexed, b not
    assert a == b
