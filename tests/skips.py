"""Skipping a test for what this machine lacks (helm, the CRD schemas, the public data), one way everywhere."""

from __future__ import annotations

from typing import TypeVar

import pytest

T = TypeVar("T")


def found_or_skip(found: T | None, how_to_provide: str) -> T:
    """`found`, or skip the test that needs it with `how_to_provide` (what is missing and how to get it)."""
    if found is None:
        pytest.skip(how_to_provide)
    return found
