"""The `podctl` command (console script and `python -m podctl`).

Stop signals are recorded from the first line, before the command line's heavy
imports (typer, anyio, msgspec, aiodocker take a few hundred milliseconds): a
Ctrl-C that lands there used to end the process with a KeyboardInterrupt
traceback. Only the stdlib and `podctl.early_signals` may be imported above
`main()`'s first line.
"""

from __future__ import annotations

import sys

from podctl import early_signals


def main() -> None:
    early_signals.install()
    # `podctl run` keeps recording: `Instance.run` acts on a signal once it can tear
    # down cleanly. Any other command gets Python's usual Ctrl-C back once imported.
    keep_recording = sys.argv[1:2] == ["run"]
    from podctl.cli import app

    if not keep_recording:
        early_signals.restore()
    # typer turns a KeyboardInterrupt inside a command into a quiet exit 130.
    app()


if __name__ == "__main__":
    main()
