"""Deterministic train / held-out splits of the public knowledge sets, shared by the loaders and the evaluations.

One function per corpus, so the knowledge-base build (which may learn from the training part) and the evaluation
(which scores only the held-out part) can never disagree about which file is which.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "heldout"]

# One file in five is held out: sha1(id) mod 5 == 0. A hash, not the file order, so adding or renaming other
# files never moves a file between the parts.
HELDOUT_MODULUS = 5


def tcm_split(file_id: str) -> Split:
    """The part of tcm-insert-ner a file belongs to, by its id (the brat file stem: "0" for 0.txt / 0.ann)."""
    digest = int.from_bytes(hashlib.sha1(str(file_id).encode("utf-8")).digest(), "big")
    return "heldout" if digest % HELDOUT_MODULUS == 0 else "train"
