"""Where engines keep what they build once (rebuilt tokenizer, converted checkpoints).

Nothing here is downloaded: the cache only holds artefacts derived from files that installed packages ship,
so deleting it is always safe; the next use rebuilds it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $ARMED_CACHE_DIR, else ~/.cache/armed."""
    root = os.environ.get("ARMED_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "armed"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return cache_dir()/name, building it with `build(tmp_dir)` first if it is missing.

    The build writes into a temporary sibling folder that is renamed into place only when complete, so an
    interrupted build (or two processes racing) never leaves a half-written folder that later runs would trust.
    """
    target = cache_dir() / name
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir()))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
