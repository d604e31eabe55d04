"""Where engines keep what they build once (rebuilt tokenizer, converted checkpoints), and how a folder is published.

Nothing here is downloaded: the cache only holds artefacts derived from files that installed packages ship,
so deleting it is always safe; the next use rebuilds it.

`build_at` is the one way a folder is published, here and in the chart's weight cache (ops/hub_fetch.py): built in
a temporary sibling, renamed into place only when complete, under an exclusive lock, so two processes (two pods on
one node's hostPath, two nodes on a shared ReadWriteMany volume) never both build it and none ever reads a
half-written folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $ARMED_CACHE_DIR, else ~/.cache/armed."""
    root = os.environ.get("ARMED_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "armed"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block; other holders wait.

    flock works between processes of one kernel (pods on one node's hostPath) and, on NFS v4 (what ReadWriteMany
    classes such as EFS and Filestore serve), Linux maps it to a POSIX lock the server arbitrates. The lock dies
    with its process, so a killed builder never leaves it held.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_at(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, building it with `build(tmp_dir)` first if it is missing.

    The build writes into a temporary sibling folder that is renamed into place only when complete (rename is
    atomic within one file system), under a lock beside it: a concurrent caller waits, then finds the folder; an
    interrupted build leaves only its temporary folder, which no reader trusts (the next build starts afresh).
    """
    if target.is_dir():
        return target
    with exclusive_lock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # built while this caller waited for the lock
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(tmp)
            # mkdtemp made it 0700: readable by its builder's uid only. The folder is shared (other pods, other
            # releases on the node or the claim, possibly another runAsUser): everyone reads, only owners write.
            tmp.chmod(0o755)
            try:
                tmp.rename(target)
            except OSError:
                if not target.is_dir():  # not a lost race (a builder that took no lock): a real failure
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return cache_dir()/name, building it with `build(tmp_dir)` first if it is missing (see build_at)."""
    return build_at(cache_dir() / name, build)
