"""The service's settings: environment variables with the prefix ``LMREC_`` (e.g. ``LMREC_MODEL_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Everything ``lmrec serve`` can be told; read inside :func:`lmrec.serving.create_app`, never at import.

    Every field can be set by an environment variable named ``LMREC_<FIELD>`` (``LMREC_DEV_MODE=1``).
    """

    model_config = SettingsConfigDict(env_prefix="LMREC_", extra="forbid")

    model_dir: Path | None = Field(None, description="The trained model folder to serve first.")
    runtime: Literal["torch", "int8", "onnx"] | None = Field(
        None, description="How SeqRec models (and auto's SeqRec components) score: 'torch' (float), 'int8' "
                          "or 'onnx', for every model version served; default: each model folder's "
                          "serving.json (written by `lmrec seqrec export`), else torch.")
    models_dir: Path | None = Field(
        None, description="Folder of model versions (one sub-folder each) for hot swaps; default: the parent "
                          "of model_dir.")
    store: str = Field("lmrec.duckdb",
                       description="The store (events, items, users, API keys): a DuckDB file, or a "
                                   "postgresql:// URL that several replicas share.")
    dev_mode: bool = Field(False, description="Serve without API keys (never in production).")
    text_encoder: str | None = Field(
        "default", description="Text encoder for item and profile text: 'default' (lmrec.text's), a model "
                               "name "
                               "or path, or 'none' to switch text features off.")
    max_body_bytes: int = Field(1_000_000, ge=1, description="Larger request bodies get 413.")
    max_batch: int = Field(10_000, ge=1, description="Most events or items in one batch request.")
    max_k: int = Field(1_000, ge=1, description="Largest k a request may ask for.")
    history_limit: int = Field(200, ge=1, description="Newest events of a user that recommendations read.")
    max_cached_users: int = Field(100_000, ge=1, description="Users whose recent history is held in memory.")
    preload_users: bool = Field(True, description="Load the most recently active users' histories at start.")
    ingest_flush_ms: float = Field(
        0, ge=0, description="How long the event writer gathers a batch before committing it (ms): a latency "
                             "knob; requests are answered after their commit whatever its value.")
    ingest_ack_before_commit_may_lose_events: bool = Field(
        False, description="Answer events requests before their commit (fire and forget): faster, and a "
                           "killed process loses what was acknowledged but not yet committed.")
    ingest_timeout_s: float = Field(30.0, gt=0, description="Longest wait for an events commit (then 503).")
    log_impressions: bool = Field(
        True, description="Store what each recommendation answer showed a known user as impression events "
                          "(list id = the answer's list_id, position = rank from 0), through the events "
                          "writer without making the answer wait for the commit; clicks sent with that "
                          "list_id join to them. Impressions are never history.")
    erasure_compaction: bool = Field(
        True, description="After erasing a user, rewrite the store file so that the deleted rows leave no "
                          "bytes behind (writes wait meanwhile; docs/privacy.md has the cost). Off: the "
                          "bytes stay in freed blocks until DuckDB reuses them or `lmrec privacy compact` "
                          "runs.")
    rate_limit_per_s: float = Field(
        0.0, ge=0, description="Requests per second each API key may send (0: no limit); a key's own limit "
                               "(`lmrec keys create --rate`) overrides it. Excess requests get 429.")
    rate_limit_burst: float = Field(0.0, ge=0,
                                    description="Requests a key may send at once (default: 1 s of its rate).")
    ann_threshold: int = Field(
        50_000, ge=0, description="Catalogues larger than this are searched with a FAISS index.")
    ann_candidates: int = Field(200, ge=1,
                                description="Candidates the ANN index returns for exact re-scoring.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW search breadth (recall vs speed).")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="Default MMR diversity weight (0 = off).")
    max_group_share: float = Field(
        1.0, gt=0.0, le=1.0, description="Default exposure cap: no category above this share of a list "
                                         "(1 = off; lmrec.data.exposure).")
    min_tail_share: float = Field(
        0.0, ge=0.0, le=1.0, description="Default minimum share of long-tail items in a list (0 = off).")
    key_cache_seconds: float = Field(2.0, ge=0.0,
                                     description="How long a verified API key is trusted in memory.")
    backup_dir: Path | None = Field(
        None, description="Where `POST /v1/admin/backup` writes backups (default: a 'backups' folder next to "
                          "the store file).")
    model_threads: int = Field(
        1, ge=1, le=1024,
        description="Threads a request's model inference may use (torch intra-op threads; `lmrec serve` "
                    "sets them). One request scores one user: more threads only wait for each other, and on "
                    "a busy machine their spin-waits multiply the latency.")
    store_threads: int = Field(
        1, ge=0, description="DuckDB threads for the store's queries once the service has started (0: "
                             "DuckDB's default, one per core). Serving queries are small: one thread "
                             "saves CPU per commit.")
    model_concurrency: int = Field(
        0, ge=0, le=1024,
        description="Requests that may run model inference at the same time (0: one per CPU core this "
                    "process may use). The others wait their turn: scoring is CPU-bound, so running more at "
                    "once only makes every one of them slower (the web server's thread pool would start "
                    "dozens).")
    stats_window: int = Field(2_000, ge=10,
                              description="Recent requests kept for the dashboard's live stats.")
    update_interval_s: float = Field(
        0.0, ge=0, description="Seconds between background incremental updates of the active model on the "
                               "events stored since its training (0: off). A guard activates the new version "
                               "only when it is not worse than the serving one (docs/serving.md).")
    update_holdout: float = Field(0.1, ge=0.0, lt=1.0,
                                  description="Share of the new events, the most recent, held back to judge "
                                              "an update (0: no guard).")
    update_tolerance: float = Field(0.01, ge=0.0,
                                    description="Largest NDCG@10 drop against the serving model an update "
                                                "may have and still be activated.")
    update_min_events: int = Field(100, ge=1, description="Fewest new events a background update runs on.")
    update_passes: int | None = Field(None, ge=1, description="Epochs / ALS sweeps of an update (default: "
                                                              "the model's own).")

    def resolved_backup_dir(self) -> Path:
        if self.backup_dir is not None:
            return self.backup_dir
        local = self.store != ":memory:" and "://" not in self.store.replace("duckdb://", "")
        base = Path(self.store.replace("duckdb://", "")).expanduser().parent if local else Path.cwd()
        return base / "backups"

    def resolved_models_dir(self) -> Path | None:
        if self.models_dir is not None:
            return self.models_dir
        return self.model_dir.parent if self.model_dir is not None else None

    @property
    def text_enabled(self) -> bool:
        return bool(self.text_encoder) and str(self.text_encoder).lower() not in ("none", "off", "")
