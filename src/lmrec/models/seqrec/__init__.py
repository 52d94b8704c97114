"""SeqRec: a causal Transformer (or GRU/LSTM) over users' recent events; id, text or fused item vectors."""

from lmrec.models.seqrec.model import NextItemLoss, SeqRec, SeqRecConfig
from lmrec.models.seqrec.network import (
    ItemEncoder,
    NetworkConfig,
    SeqRecNetwork,
    SequenceEncoder,
    gap_buckets,
)

__all__ = ["ItemEncoder", "NetworkConfig", "NextItemLoss", "SeqRec", "SeqRecConfig", "SeqRecNetwork",
           "SequenceEncoder", "gap_buckets"]
