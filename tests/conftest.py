"""Shared fixtures: where the real data lives; one torch thread for every test (2-core machines)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tiny models: one thread beats two (thread overhead dominates, and subprocesses share the cores).
torch.set_num_threads(1)


def shared_data_dir() -> Path:
    return Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data folder (../shared/data); tests that need it skip when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder not found at {path} (set INFIR_SHARED_DATA)")
    return path
