"""tests/parallel.py, `make test`'s runner: how it splits the arguments and folds the two exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import parallel


def test_each_part_gets_its_marker_its_temp_folder_and_its_own_junit_file() -> None:
    ray, rest = parallel.PARTS
    argv = parallel.part_args(ray, ["-q", "--junitxml=/out/junit.xml", "tests/serve"], Path("/tmp/apt-x"))
    assert argv == ["-m", "ray_cluster", "--basetemp=/tmp/apt-x/ray", "-q", "--junitxml=/out/junit-ray.xml",
                    "tests/serve"]
    assert parallel.part_args(rest, [], Path("/tmp/apt-x")) == ["-m", "not ray_cluster", "--basetemp=/tmp/apt-x/rest"]


@pytest.mark.parametrize(("codes", "status"), [
    ([0, 0], 0), ([0, 1], 1), ([1, 0], 1), ([5, 0], 0), ([0, 5], 0), ([5, 5], 5), ([5, 1], 1), ([2, 1], 2),
    ([0, -11], 139), ([-9, 0], 137), ([5, -11], 139),  # killed by a signal (a segfault, SIGKILL): never a pass
])
def test_the_status_is_the_worse_part_and_an_empty_part_is_no_failure(codes: list[int], status: int) -> None:
    assert parallel.combined_status(codes) == status


def test_a_marker_expression_of_ones_own_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert parallel.main(["-m", "slow"]) == 4
    assert "-m is its own" in capsys.readouterr().err
