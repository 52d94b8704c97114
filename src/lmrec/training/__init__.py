"""Training for lmrec's neural models: the loop, losses, checkpoints and distributed runs.

Generic only: nothing here knows a model. Each model builds its own training rows (e.g.
:mod:`lmrec.models.seqrec.rows`) and its own validation (ranking with :mod:`lmrec.data.ranking`).
"""

from lmrec.training.losses import (
    LOSSES,
    bce_one_negative,
    full_softmax_ce,
    popularity_proposal,
    sampled_softmax_logq,
)
from lmrec.training.trainer import TrainConfig, Trainer, TrainResult, seed_everything, warmup_cosine

__all__ = ["LOSSES", "TrainConfig", "TrainResult", "Trainer", "bce_one_negative", "full_softmax_ce",
           "popularity_proposal", "sampled_softmax_logq", "seed_everything", "warmup_cosine"]
