"""Evaluation tests reuse the checkerboard dataset of the model tests."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.dataset import Dataset
from tests.models.conftest import checkerboard, checkerboard_vectors


@pytest.fixture(scope="session")
def board() -> Dataset:
    return checkerboard()


@pytest.fixture(scope="session")
def board_vectors(board: Dataset) -> np.ndarray:
    return checkerboard_vectors(board)
