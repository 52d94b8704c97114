"""MultiTask: one sequence representation, several predictions — next item, rating, next action type, user
value.

A user's events (item, type and value bucket, time gap) go through the SeqRec causal encoder
(:class:`~lmrec.models.seqrec.network.SequenceEncoder`); its state after event ``t`` feeds four heads:

* **next item** — dot product with the shared item vectors, trained with full softmax cross-entropy over the
  catalogue (Klenitskiy & Vasilev, RecSys 2023). This makes the model a
  :class:`~lmrec.models.base.Recommender`.
* **rating** — ``μ + b_i + a·d_t + MLP([h_t, e_i, h_t ⊙ e_i])`` for the item ``i`` of event ``t + 1``: a
  biased factorisation whose user part is read from the sequence. ``d_t`` is the user's shrunk mean rating
  deviation so far, a statistic of the input (the user bias that biased MF learns per user). Squared error.
* **next action type** — a linear softmax over the dataset's event types for event ``t + 1``. Cross-entropy.
* **user value** — at a cut time, ``log1p`` of the user's value over the next ``horizon_days`` (total purchase
  amount, or number of events) from ``[h_last, RFM features]``: the state after the last event before the cut
  and the user's recency, frequency, monetary... at the cut (:func:`lmrec.data.rfm.rfm_frame`; the sequence
  cannot know how long ago its last event was). Trained at several earlier cuts whose windows end before the
  latest training event. Squared error.

Each event's value enters the input: the type embedding is indexed by (type, value bucket), so a 5-star and a
1-star rating, or a cheap and an expensive purchase, are different tokens.

The heads are trained jointly with fixed weights (``w_*``), or with learned homoscedastic-uncertainty weights
(Kendall, Gal & Cipolla, CVPR 2018: ``Σ exp(-s_k) L_k + s_k``, ``weighting="uncertainty"``), or one at a time
(``heads=("rating",)``). Validation holds out the last training event of a seeded share of users (and the
latest value cut). By default each head stops on its own validation loss and keeps its best epoch's weights,
is then fine-tuned alone from them, and is also trained alone from scratch (the single-task model); each head
predicts with whichever of these validates best, so no head validates worse than the same head trained alone
(``stopping``, ``head_finetune``, ``head_alone``). ``stopping="joint"`` is one early stop on the sum of the
heads' validation losses, each relative to its first value.

Modules: :mod:`~lmrec.models.multitask.config` (settings and the fitted spec),
:mod:`~lmrec.models.multitask.features` (event arrays, windows, training rows),
:mod:`~lmrec.models.multitask.network` (encoder and heads), :mod:`~lmrec.models.multitask.loss` (the weighted
head losses), :mod:`~lmrec.models.multitask.model` (the recommender: fitting, predictions, saving).
"""

from lmrec.models.multitask.config import HEADS, MultiTaskConfig
from lmrec.models.multitask.model import MultiTask
from lmrec.models.multitask.network import MultiTaskNetwork

__all__ = ["HEADS", "MultiTask", "MultiTaskConfig", "MultiTaskNetwork"]
