"""Dev mode (`podctl dev`): `develop.watch` rules, live sync into running replicas,
rebuild-and-roll.

- `patterns`: `.dockerignore` matching, plus what is always ignored;
- `debounce`: the sliding quiet window, with an injected clock;
- `changes`: content hashes per synced file and the batch a set of changed paths
  makes (pure: what to send, what to delete, what to restart, whether to rebuild);
- `archive`: the tar stream of one batch;
- `session`: the watcher task of one podctl, wired to its controller and runtime.
"""
