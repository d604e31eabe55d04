"""helm and the CRD validator, for the chart tests (tests/k8s) and the ops tests (tests/ops)."""

from __future__ import annotations

import pytest

from ops.chart import find_helm
from ops.crdvalidate import CrdValidator, find_crd_dir
from tests.skips import found_or_skip


@pytest.fixture(scope="session")
def helm() -> str:
    return found_or_skip(find_helm(), "helm not found: run ops/fetch_helm.sh (installs .cache/bin/helm) or put helm "
                         "v3 on PATH")


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    found_or_skip(find_crd_dir(), "CRD schemas not found: set ARMED_SHARED_CRDS or provide ../shared/crds next to the "
                  "repository")
    return CrdValidator()
