"""Retrieve and rank: any lmrec models as retrievers, a learned ranker (LightGBM LambdaRank) over their
merged candidates. Importing this package registers the ``pipeline`` model."""

from lmrec.models.pipeline.model import Pipeline, PipelineConfig

__all__ = ["Pipeline", "PipelineConfig"]
