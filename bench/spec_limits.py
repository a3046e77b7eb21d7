"""Time and peak memory of `podctl validate` on hostile stack files.

    python -m bench.spec_limits            # prints a Markdown table

Each case runs `podctl validate FILE` in a fresh process under GNU time (so
the figure includes start-up, ~0.3 s of imports): wall and CPU time are the
median of RUNS runs, peak RSS the largest.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from podctl.spec.limits import MAX_FILE_BYTES

RUNS = 3
TIMEOUT_S = 120


def bomb(levels: int) -> str:
    lines = ["name: bomb", 'x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("pods: {}")
    return "\n".join(lines) + "\n"


def big(size: int) -> str:
    """A valid stack padded to `size` bytes with one large inline config."""
    head = "name: big\npods:\n  web:\n    image: busybox:1.36\nconfigs:\n  blob:\n    data: |\n"
    line = "      " + "x" * 73 + "\n"  # 80 bytes
    body = line * ((size - len(head)) // len(line))
    tail_len = size - len(head) - len(body)
    tail = ("      " + "y" * (tail_len - 7) + "\n") if tail_len >= 8 else "#" * tail_len
    text = head + body + tail
    assert len(text.encode()) == size, (len(text), size)
    return text


DEEP_YAML = "name: x\nx-d: " + "[" * 10_000 + "]" * 10_000 + "\n"
DEEP_TOML = 'name = "x"\nx = ' + "[" * 10_000 + "]" * 10_000 + "\n"
CASES: list[tuple[str, str, str]] = [
    ("alias bomb, 6 levels", "bomb6.yaml", bomb(6)),
    ("alias bomb, 9 levels", "bomb9.yaml", bomb(9)),
    ("10,000 nested flow lists (YAML)", "deep.yaml", DEEP_YAML),
    ("10,000 nested arrays (TOML)", "deep.toml", DEEP_TOML),
    ("10 MiB stack file (at the limit)", "big.yaml", big(MAX_FILE_BYTES)),
    ("10 MiB + 1 byte (over the limit)", "bigger.yaml", big(MAX_FILE_BYTES + 1)),
]


def measure(path: Path) -> tuple[int, float, float, int]:
    """(exit code, wall s, cpu s, peak RSS KiB) of one `podctl validate path`.

    GNU time reports the child's own peak RSS (wait4 on a child forked from
    this process would count the pre-exec copy of its memory).
    """
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", sys.executable, "-m", "podctl", "validate"]
    proc = subprocess.run(
        [*cmd, str(path)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    wall, user, system, rss = proc.stderr.strip().splitlines()[-1].split()
    return proc.returncode, float(wall), float(user) + float(system), int(rss)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for title, name, text in CASES:
            path = Path(tmp) / name
            path.write_text(text)
            results = [measure(path) for _ in range(RUNS)]
            codes = {r[0] for r in results}
            wall = statistics.median(r[1] for r in results)
            cpu = statistics.median(r[2] for r in results)
            rss = max(r[3] for r in results)
            size = path.stat().st_size
            rows.append(
                f"| {title} | {size:,} B | {'/'.join(map(str, sorted(codes)))} "
                f"| {wall:.2f} s | {cpu:.2f} s | {rss / 1024:.0f} MiB |"
            )
        # The floor: `podctl validate` of a minimal valid file.
        path = Path(tmp) / "minimal.yaml"
        path.write_text("name: x\npods:\n  web:\n    image: busybox:1.36\n")
        results = [measure(path) for _ in range(RUNS)]
        rows.append(
            f"| minimal valid file (floor) | {path.stat().st_size} B | {results[0][0]} "
            f"| {statistics.median(r[1] for r in results):.2f} s "
            f"| {statistics.median(r[2] for r in results):.2f} s "
            f"| {max(r[3] for r in results) / 1024:.0f} MiB |"
        )
    print("| file | size | exit | wall (median of 3) | CPU | peak RSS |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
