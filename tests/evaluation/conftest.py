"""Evaluation tests reuse the checkerboard dataset and its text vectors from the model tests' fixtures."""

from tests.models.conftest import board, board_vectors  # noqa: F401  (pytest finds imported fixtures)
