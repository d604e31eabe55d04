"""Download model folders from the Hugging Face Hub: the chart's `modelWeights.source: hub` init step.

    python -m ops.hub_fetch --dest /models Qwen3-32B=Qwen/Qwen3-32B Qwen3-Embedding-0.6B=Qwen/Qwen3-Embedding-0.6B@main

makes each repo's files appear at `<dest>/<folder>` (the `/models/<folder>` path the profile's engines load), with
huggingface_hub's `snapshot_download`, which reads HF_TOKEN and HF_ENDPOINT from the environment. The chart runs it
as an init container of each pool that serves those models, with only that pool's folders
(helm/armed/templates/rayservice.yaml); it runs in armed's image, which has huggingface_hub (transformers needs it).

`<dest>` is the chart's weight cache (values `modelWeights.cache`): a node's hostPath or a ReadWriteMany claim that
outlives the pod and that other pods fill at the same time. So a folder is downloaded once per (repo, revision):

    <dest>/.store/<folder>@<key>/   one complete snapshot, key = hash of repo@revision, published by
                                    armed.engines.cache.build_at (temporary sibling + rename, under a lock)
    <dest>/<folder> -> .store/<folder>@<key>   a relative symlink, swapped atomically (rename over it)

A pod that starts while another downloads waits on the lock and then finds the snapshot; a pod killed mid-download
leaves a temporary folder nobody reads; a changed revision downloads a new snapshot and moves the link, never
rewriting files a running engine has open. Old snapshots are not deleted (a pod on them may still be loading).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from armed.engines.cache import build_at, exclusive_lock

STORE = ".store"
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Fetch:
    """One folder to fill: `folder=org/repo[@revision]`."""

    folder: str
    repo: str
    revision: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Fetch:
        folder, sep, ref = spec.partition("=")
        repo, _, revision = ref.partition("@")
        if not sep or not _FOLDER.match(folder) or folder in (".", ".."):
            raise ValueError(f"{spec!r}: expected FOLDER=ORG/REPO[@REVISION] with FOLDER one path component")
        if not _REPO.match(repo):
            raise ValueError(f"{spec!r}: {repo!r} is not a Hugging Face repo id (ORG/REPO)")
        return cls(folder, repo, revision or None)


Downloader = Callable[..., str]


def _snapshot_download(**kw: object) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kw)


def snapshot_name(item: Fetch) -> str:
    """`<folder>@<key>`: one name per (repo, revision), so a changed revision never reuses an old snapshot."""
    key = hashlib.sha256(f"{item.repo}@{item.revision or ''}".encode()).hexdigest()[:16]
    return f"{item.folder}@{key}"


def _point(link: Path, target: Path) -> None:
    """Make `link` a relative symlink to `target`, atomically (a new link renamed over the old one)."""
    rel = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == rel:
        return
    tmp = link.parent / f".{link.name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rel)
    os.replace(tmp, link)


def fetch(items: Sequence[Fetch], dest: Path, download: Downloader | None = None) -> list[Path]:
    """Make every item appear at dest/<folder>, downloading only what no earlier run (or pod) has published.

    Returns the folders (links) written. A failure raises (the pod's init container fails and is retried).
    """
    download = download or _snapshot_download
    written = []
    for it in items:
        link = dest / it.folder
        if link.exists() and not link.is_symlink():
            raise RuntimeError(f"{link} is a folder this fetch did not publish (a cache folder must be a link into "
                               f"{dest / STORE}): remove it, or use modelWeights.source pvc for a pre-filled volume")
        name = f"{it.repo}{'@' + it.revision if it.revision else ''}"

        def _download(tmp: Path, it: Fetch = it, name: str = name, link: Path = link) -> None:
            print(f"fetching {name} -> {link}", file=sys.stderr, flush=True)
            download(repo_id=it.repo, revision=it.revision, local_dir=str(tmp))

        snapshot = build_at(dest / STORE / snapshot_name(it), _download)
        with exclusive_lock(dest / STORE / f".{it.folder}.link.lock"):  # one writer of the link at a time
            _point(link, snapshot)
        print(f"{link} -> {snapshot.name}", file=sys.stderr, flush=True)
        written.append(link)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.hub_fetch", description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True, help="folder the model folders go in (the models volume)")
    ap.add_argument("items", nargs="+", metavar="FOLDER=ORG/REPO[@REVISION]")
    a = ap.parse_args(argv)
    try:
        items = [Fetch.parse(s) for s in a.items]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fetch(items, a.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
