"""helm and the CRD validator, for the chart tests (tests/k8s) and the ops tests (tests/ops)."""

from __future__ import annotations

import pytest

from ops.chart import find_helm
from ops.crdvalidate import CrdValidator, find_crd_dir


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.skip("helm not found: run ops/fetch_helm.sh (installs .cache/bin/helm) or put helm v3 on PATH")
    return path


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    if find_crd_dir() is None:
        pytest.skip("CRD schemas not found: set ARMED_SHARED_CRDS or provide ../shared/crds next to the repository")
    return CrdValidator()
