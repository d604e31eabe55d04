"""Looking a name up in one of armed's registries (armed/roles.py's roles, armed/stages.py's stages).

Each registry is a name → entry mapping built from one table; an unknown name is a ValueError that says what kind
of thing was asked for and where the names are listed, the same way for every registry. Imports nothing from armed,
so the ground-floor tables (read by the settings) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def registry_entry(table: Mapping[str, T], name: str, kind: str, listed_in: str) -> T:
    """The entry `name` of `table`; ValueError naming it, its kind and the module that lists them when there is
    none (a KeyError would not say which registry was asked)."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r} ({listed_in} lists the {kind}s)") from None
