"""From changed paths to a batch: hashing, no-ops, deletions, actions, the 1,000 fallback."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from podctl.dev.archive import common_base, tar_files
from podctl.dev.changes import MAX_BATCH_FILES, PodWatch
from podctl.spec import load_stack


def pod_watch(tmp_path: Path, watch: str, *, build: bool = True, extra: str = "") -> PodWatch:
    app = tmp_path / "app"
    (app / "site").mkdir(parents=True, exist_ok=True)
    (app / "Dockerfile").write_text("FROM busybox:1.36\nCOPY site /www\n")
    (app / "site" / "index.html").write_text("v1\n")
    head = "    build: ./app\n" if build else "    image: busybox:1.36\n"
    text = f"name: shop\npods:\n  web:\n{head}{extra}    develop:\n      watch:\n{watch}"
    (tmp_path / "stack.yaml").write_text(text)
    pod = load_stack(tmp_path / "stack.yaml", environ={}).pods[0]
    w = PodWatch(pod)
    w.scan()
    return w


SYNC = "        - {path: app/site, action: sync, target: /www}\n"


def site(tmp_path: Path) -> Path:
    return (tmp_path / "app" / "site").resolve()


def test_a_save_sends_the_file_once(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    index = site(tmp_path) / "index.html"
    index.write_text("v2\n")
    b = w.batch([str(index)])
    assert [(f.target, f.data) for f in b.puts] == [("/www/index.html", b"v2\n")]
    assert b.deletes == [] and not b.restart and not b.rebuild
    w.commit(b)
    # The same content saved again: nothing to send, nothing to say.
    index.write_text("v2\n")
    again = w.batch([str(index)])
    assert again.empty and again.puts == []


def test_an_uncommitted_batch_is_sent_again(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    index = site(tmp_path) / "index.html"
    index.write_text("v2\n")
    w.batch([str(index)])  # the sync failed: not committed
    assert len(w.batch([str(index)]).puts) == 1


def test_mode_change_is_a_change(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    script = site(tmp_path) / "run.sh"
    script.write_text("echo\n")
    w.commit(w.batch([str(script)]))
    os.chmod(script, 0o755)
    (put,) = w.batch([str(script)]).puts
    assert put.mode & 0o111


def test_new_dir_and_deletions(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    css = site(tmp_path) / "css"
    css.mkdir()
    (css / "a.css").write_text("a")
    (css / "b.css").write_text("b")
    b = w.batch([str(css)])  # only the directory's own event arrived
    assert sorted(f.target for f in b.puts) == ["/www/css/a.css", "/www/css/b.css"]
    w.commit(b)
    (css / "a.css").unlink()
    (css / "b.css").unlink()
    css.rmdir()
    (site(tmp_path) / "index.html").unlink()
    gone = w.batch([str(css), str(site(tmp_path) / "index.html")])
    assert sorted(gone.deletes) == ["/www/css/a.css", "/www/css/b.css", "/www/index.html"]
    w.commit(gone)
    assert w.batch([str(site(tmp_path) / "index.html")]).empty  # already deleted


def test_temporary_files_never_cost_a_delete(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    # An editor's temp file came and went before the batch was made.
    b = w.batch([str(site(tmp_path) / "index.html.tmp.1234")])
    assert b.empty
    # Swap files and the like are ignored outright.
    (site(tmp_path) / ".index.html.swp").write_text("x")
    assert w.batch([str(site(tmp_path) / ".index.html.swp")]).empty


def test_ignore_patterns_and_dockerignore(tmp_path: Path) -> None:
    watch = "        - {path: app/site, action: sync, target: /www, ignore: ['*.log']}\n"
    (tmp_path / "app" / "site").mkdir(parents=True)
    (tmp_path / "app" / "site" / ".dockerignore").write_text("secret.txt\n")
    w = pod_watch(tmp_path, watch)
    for name in ("a.log", "secret.txt", "ok.txt"):
        (site(tmp_path) / name).write_text(name)
    b = w.batch([str(site(tmp_path) / n) for n in ("a.log", "secret.txt", "ok.txt")])
    assert [f.target for f in b.puts] == ["/www/ok.txt"]


def test_actions(tmp_path: Path) -> None:
    watch = (
        "        - {path: app/site, action: sync+restart, target: /www}\n"
        "        - {path: app/Dockerfile, action: rebuild}\n"
        "        - {path: app/site, action: sync+exec, target: /srv, exec: {command: [reload]}}\n"
    )
    w = pod_watch(tmp_path, watch)
    index = site(tmp_path) / "index.html"
    index.write_text("v2\n")
    b = w.batch([str(index)])
    assert sorted(f.target for f in b.puts) == ["/srv/index.html", "/www/index.html"]
    assert b.restart and [e.command for e in b.execs] == [("reload",)] and not b.rebuild
    w.commit(b)
    assert w.batch([str(index)]).empty  # identical: no restart, no exec
    dockerfile = (tmp_path / "app" / "Dockerfile").resolve()
    r = w.batch([str(dockerfile)])
    assert r.rebuild and not r.syncs


def test_over_1000_files_rebuilds_a_built_pod(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    paths = []
    for i in range(MAX_BATCH_FILES + 1):
        p = site(tmp_path) / f"f{i}.txt"
        p.write_text(str(i))
        paths.append(str(p))
    b = w.batch(paths)
    assert b.rebuild and b.puts == [] and b.fallback is not None
    assert "rebuilding web" in b.fallback


def test_over_1000_files_resyncs_an_image_pod(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC, build=False)
    paths = []
    for i in range(MAX_BATCH_FILES + 1):
        p = site(tmp_path) / f"f{i}.txt"
        p.write_text(str(i))
        paths.append(str(p))
    b = w.batch(paths[:10])  # a normal batch first
    w.commit(b)
    big = w.batch(paths)
    assert not big.rebuild and big.fallback is not None and "resyncing" in big.fallback
    # Everything that differs from what was sent: the other files and index.html.
    assert len(big.puts) == MAX_BATCH_FILES + 1 - 10 + 1


def test_bind_mounted_path_is_skipped_and_said_once(tmp_path: Path) -> None:
    extra = "    mounts: [{bind: ./app/site, path: /www}]\n"
    w = pod_watch(tmp_path, SYNC, extra=extra)
    index = site(tmp_path) / "index.html"
    index.write_text("v2\n")
    first = w.batch([str(index)])
    assert first.puts == [] and len(first.notices) == 1
    assert "bind-mounted at /www" in first.notices[0]
    assert w.batch([str(index)]).notices == []


def test_tar_of_a_batch(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    (site(tmp_path) / "sub").mkdir()
    (site(tmp_path) / "sub" / "x.js").write_text("x")
    os.symlink("index.html", site(tmp_path) / "home.html")
    b = w.batch([str(site(tmp_path) / n) for n in ("index.html", "sub", "home.html")])
    base = common_base(f.target for f in b.puts)
    assert base == "/www"
    with tarfile.open(fileobj=io.BytesIO(tar_files(b.puts, base))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["home.html", "index.html", "sub/x.js"]
    assert members["home.html"].issym() and members["home.html"].linkname == "index.html"


def test_a_directory_replaced_by_a_file_deletes_then_puts(tmp_path: Path) -> None:
    w = pod_watch(tmp_path, SYNC)
    d = site(tmp_path) / "x"
    d.mkdir()
    (d / "a.txt").write_text("a")
    w.commit(w.batch([str(d)]))
    (d / "a.txt").unlink()
    d.rmdir()
    d.write_text("now a file")
    b = w.batch([str(d), str(d / "a.txt")])
    assert b.deletes == ["/www/x/a.txt"]
    assert [f.target for f in b.puts] == ["/www/x"]


def test_a_single_file_rule(tmp_path: Path) -> None:
    watch = "        - {path: app/site/index.html, action: sync, target: /etc/app/index.conf}\n"
    w = pod_watch(tmp_path, watch)
    index = site(tmp_path) / "index.html"
    index.write_text("v2\n")
    other = site(tmp_path) / "other.html"
    other.write_text("x")
    b = w.batch([str(index), str(other)])
    assert [(f.target, f.data) for f in b.puts] == [("/etc/app/index.conf", b"v2\n")]
    w.commit(b)
    index.unlink()
    assert w.batch([str(index)]).deletes == ["/etc/app/index.conf"]
