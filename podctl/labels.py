"""Docker label names: the identity contract between podctl and the engine.

Identity lives in labels, not in a state file, so a restarted podctl adopts what
is already running. podctl never touches an object that lacks ``STACK``.
"""

from __future__ import annotations

PREFIX = "io.podctl."
STACK = "io.podctl.stack"
POD = "io.podctl.pod"
REPLICA = "io.podctl.replica"
REVISION = "io.podctl.revision"
CONTAINER = "io.podctl.container"
# Kind of object a network/volume is (kept so `down` can find what it owns).
KIND = "io.podctl.kind"
# Name of a volume inside its stack (the Docker name is `<stack>_<name>`).
VOLUME = "io.podctl.volume"
