"""Bounds on what a stack file may make podctl do, in one place.

A stack file is input: a 360-byte YAML "billion laughs" (anchors of aliases of
anchors) expands to gigabytes, and a few thousand `[` overflow every recursive
walk. These limits are far above any real stack (a large one is a few thousand
nodes, ten levels deep) and low enough that the worst accepted file still
validates in about a second.
"""

from __future__ import annotations

# Bytes of a stack file; checked before parsing, with the file named.
MAX_FILE_BYTES = 10 * 1024 * 1024

# Nodes (mappings, lists, keys and scalars) after every alias is expanded. An
# alias counts as the whole subtree it stands for, so a YAML alias bomb is
# refused at the first alias that would cross the limit, before it is expanded.
MAX_NODES = 100_000

# Characters of scalar text after alias expansion: a long string aliased many
# times stays under MAX_NODES but would still be scanned once per copy.
MAX_TEXT_CHARS = 2 * MAX_FILE_BYTES

# Nesting levels: the top-level mapping is level 0, `pods.web.image` is level 3.
# Checked while composing (YAML) and without recursion (TOML), so even 10,000
# levels give a located error instead of a RecursionError.
MAX_DEPTH = 100

# Replicas of one pod, checked at validation (`load_stacks(max_replicas=...)`):
# `replicas: 1e9` is a typo, not a plan, and `podctl run` would block on it.
DEFAULT_MAX_REPLICAS = 1_000
