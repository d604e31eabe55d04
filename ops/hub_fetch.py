"""Download model folders from the Hugging Face Hub: the chart's `modelWeights.source: hub` init step.

    python -m ops.hub_fetch --dest /models Qwen3-32B=Qwen/Qwen3-32B Qwen3-Embedding-0.6B=Qwen/Qwen3-Embedding-0.6B@main

puts each repo's files in `<dest>/<folder>` (the `/models/<folder>` path the profile's engines load) with
huggingface_hub's `snapshot_download`, which reads HF_TOKEN and HF_ENDPOINT from the environment. The chart runs it
as an init container of each pool that serves those models, with only that pool's folders
(helm/armed/templates/rayservice.yaml); it runs in armed's image, which has huggingface_hub (transformers needs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def fetch(items: Sequence[Fetch], dest: Path, download: Downloader | None = None) -> list[Path]:
    """Download every item into dest/<folder>; returns the folders written. A failure raises (the pod retries)."""
    download = download or _snapshot_download
    written = []
    for it in items:
        target = dest / it.folder
        print(f"fetching {it.repo}{'@' + it.revision if it.revision else ''} -> {target}", file=sys.stderr, flush=True)
        download(repo_id=it.repo, revision=it.revision, local_dir=str(target))
        written.append(target)
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
