"""The live view's content, rendered to plain text."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from podctl.api.schema import EndpointRow, ServiceRow
from podctl.dev.view import render
from podctl.reconcile.events import Event
from podctl.reconcile.steps import ReplicaStatus
from podctl.spec import load_stack


def text_of(renderable: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_pods_services_and_recent_events(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").write_text(
        "name: shop\npods:\n  web:\n    image: busybox:1.36\n    replicas: 2\n"
    )
    stack = load_stack(tmp_path / "stack.yaml", environ={})
    rows = [
        ReplicaStatus(
            stack="shop",
            pod="web",
            replica=i,
            name=f"shop-web-{i}",
            container_id=f"c{i}",
            phase="Running",
            ready=i == 0,
            restarts=i,
            revision="abc123",
            image="busybox:1.36",
        )
        for i in range(2)
    ]
    services = [
        ServiceRow(
            stack="shop",
            name="web",
            listen="127.0.0.1:8080",
            endpoints=[EndpointRow(pod="shop-web-0", address="10.0.0.2:80", ready=True)],
        )
    ]
    events = [
        Event(
            time=100.0,
            stack="shop",
            object="pod:shop/web",
            reason="Synced",
            message="synced 3 files to web (2 replicas) in 120 ms",
        ),
        Event(
            time=150.0,
            stack="shop",
            object="pod:shop/web",
            reason="BuildFailed",
            message="web keeps its running revision; the build said:\nStep 3/3\nboom",
        ),
        Event(
            time=160.0, stack="shop", object="pod:shop/web/1", reason="Started", message="started"
        ),
    ]
    out = text_of(render([stack], rows, services, events, now=200.0))
    assert "shop/web  1/2    1         abc123" in out
    assert "Started 40s ago: started" in out  # the pod's last event, any kind
    assert "127.0.0.1:8080  1/1 ready" in out
    assert "1m40s  pod:shop/web  Synced" in out
    assert "boom" in out  # a failed build's last lines are shown
    assert out.index("Synced ") > out.index("recent")
