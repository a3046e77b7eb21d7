"""`podctl down` without a running podctl reads each pod's stop_grace back from the engine."""

from __future__ import annotations

from podctl.cli.offline import stop_graces
from podctl.runtime.engine_json import container_info
from podctl.runtime.protocol import ContainerInfo


def inspected(pod: str, stop_timeout: object) -> ContainerInfo:
    config: dict[str, object] = {
        "Labels": {"io.podctl.stack": "shop", "io.podctl.pod": pod},
        "Image": "busybox:1.36",
    }
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    return container_info(
        {"Id": f"{pod}-id", "Name": f"/shop-{pod}-0", "Config": config, "State": {}}
    )


def test_stop_timeout_is_read_from_inspect() -> None:
    assert inspected("web", 3).stop_grace_s == 3.0
    assert inspected("web", None).stop_grace_s is None


def test_each_pod_gets_its_own_grace() -> None:
    containers = [inspected("web", 1), inspected("web", 2), inspected("db", 30)]
    containers.append(inspected("legacy", None))  # made before podctl set StopTimeout
    assert stop_graces(containers) == {"web": 2.0, "db": 30.0}
