"""`podctl logs STACK`: prefixes and line splitting."""

from __future__ import annotations

from podctl.cli.stacklogs import LinePrefixer, prefix_of
from podctl.runtime.protocol import ContainerInfo


def test_lines_split_across_chunks_get_one_prefix_each() -> None:
    p = LinePrefixer(b"web-0 | ")
    assert p.feed(b"hel") == b""
    assert p.feed(b"lo\nwor") == b"web-0 | hello\n"
    assert p.feed(b"ld\n\nx") == b"web-0 | world\nweb-0 | \n"
    assert p.flush() == b"web-0 | x\n"
    assert p.flush() == b""


def test_prefix_is_pod_and_replica() -> None:
    labelled = ContainerInfo(
        id="c1",
        name="shop-web-1-abc",
        labels={"io.podctl.stack": "shop", "io.podctl.pod": "web", "io.podctl.replica": "1"},
        state="running",
        image="busybox",
    )
    assert prefix_of(labelled) == "web-1"
    bare = ContainerInfo(id="c2", name="other", labels={}, state="running", image="busybox")
    assert prefix_of(bare) == "other"
