"""Apps that count (DIGEST_METRICS=1) start this process's hand-off of counts; each test that
makes one ends it, so that no later test's counts go to a store that is gone."""

from __future__ import annotations

import pytest

from digest import counters
from tests.web.conftest import app, client, limiter, outbox  # noqa: F401 - the web tests' fixtures, shared


@pytest.fixture
def counting():
    yield
    counters.close(flush=False)
