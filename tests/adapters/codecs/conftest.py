from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.codecs._corpus import CORPUS, SKIP_REASON
from tests.support import prerequisite_missing


@pytest.fixture(scope="session")
def hl7_corpus() -> Path:
    if not CORPUS.is_dir():
        prerequisite_missing(SKIP_REASON)
    return CORPUS
