"""Run several models on one dataset and protocol, with confidence intervals, paired tests and a report.

The one library function behind ``lmrec evaluate`` / ``lmrec benchmark`` (through :mod:`lmrec.experiment`)
and the demo is :func:`run_benchmark`: models are fitted on ``split.train`` with fixed hyper-parameters (or
tuned on ``split.valid`` only) and tested once on ``split.test``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.exposure import ExposurePolicy
from lmrec.data.splits import PROTOCOLS, Split, make_split
from lmrec.evaluation.evaluator import BUCKETS, EvalResult, Ranking, beyond_k, evaluate
from lmrec.evaluation.fairness import fairness_report, item_groups_for, parse_by
from lmrec.evaluation.report import write_report
from lmrec.evaluation.stats import Interval, PairedTest, paired_test
from lmrec.evaluation.tuning import tune as tune_fn
from lmrec.models.base import Recommender, create_model, resolve_item_vectors


@dataclass(frozen=True)
class ModelSpec:
    """One model of a benchmark: a registered ``name`` with settings, or a ready ``model`` (fitted or not).

    :meth:`of` is the one reader of the spellings :func:`run_benchmark` accepts (see :data:`ModelSpecLike`).
    """

    label: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    model: Recommender | None = None

    @classmethod
    def of(cls, spec: ModelSpecLike) -> ModelSpec:
        """Normalise a name, ``(name, config)``, ``(label, name, config)``, a model or ``(label, model)``."""
        if isinstance(spec, ModelSpec):
            return spec
        if isinstance(spec, Recommender):
            return cls(spec.name, spec.name, {}, spec)
        if isinstance(spec, str):
            return cls(spec, spec)
        if isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[1], Recommender):
            return cls(str(spec[0]), spec[1].name, {}, spec[1])
        if isinstance(spec, tuple | list) and len(spec) == 2:
            return cls(str(spec[0]), str(spec[0]), dict(spec[1]))
        if isinstance(spec, tuple | list) and len(spec) == 3:
            return cls(str(spec[0]), str(spec[1]), dict(spec[2]))
        raise ValueError(
            f"cannot read model spec {spec!r}: use a name, (name, config), (label, name, config) or a model"
        )

    @property
    def needs_item_vectors(self) -> bool:
        # an instance's answer: SeqRec's depends on its settings (fused items, a text start), and on the
        # class the property itself would read as true
        return (self.model if self.model is not None else self.build()).needs_item_vectors

    def build(self) -> Recommender:
        """The model instance (a new, unfitted one for a named spec)."""
        return self.model if self.model is not None else create_model(self.name, **dict(self.config))


#: A model to benchmark: a registered name, ``(name, config)``, ``(label, name, config)``, a model,
#: ``(label, model)`` or a :class:`ModelSpec`.
ModelSpecLike: TypeAlias = (
    str
    | tuple[str, Mapping[str, Any]]
    | tuple[str, str, Mapping[str, Any]]
    | Recommender
    | tuple[str, Recommender]
    | ModelSpec
)

#: Validation-tuned defaults for MovieLens-100K-sized data (see docs/benchmarks.md, "baselines").
DEFAULT_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("most-popular", {}),
    ("itemknn", {}),
    ("userknn", {}),
    ("ease", {}),
    ("als", {}),
    ("bpr", {}),
    ("content-lm", {}),
]

#: Small grids for ``lmrec benchmark --tune`` (searched on the validation split only).
TUNING_GRIDS: dict[str, dict[str, list[Any]]] = {
    "most-popular": {"half_life_days": [0.0, 30.0]},
    "itemknn": {"k": [10, 20, 50], "half_life": [10.0, 20.0, 50.0]},
    "userknn": {"k": [10, 20, 50]},
    "ease": {"lam": [50.0, 100.0, 200.0, 400.0]},
    "als": {"factors": [32, 64], "regularization": [0.3, 1.0, 3.0]},
    "bpr": {"learning_rate": [0.01, 0.05]},
    "content-lm": {"half_life": [3.0, 10.0, 0.0]},
}


@dataclass
class BenchmarkResult:
    """Everything one benchmark produced; :meth:`table` for the terminal, :meth:`to_dict` for JSON."""

    dataset: str
    protocol: str
    split_params: dict[str, Any]
    split_description: str
    ranking: str
    ks: tuple[int, ...]
    seed: int
    results: list[EvalResult]
    main_metric: str = "NDCG@10"
    n_boot: int = 1000
    test_method: str = "t"
    command: str | None = None
    dataset_stats: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    report_html: Path | None = None
    report_md: Path | None = None
    report_json: Path | None = None
    #: Training events per item index (for popularity plots); raw ids of the evaluated users' indices.
    train_popularity: np.ndarray | None = field(default=None, repr=False)
    user_ids: np.ndarray | None = field(default=None, repr=False)
    #: ``{model: {"best": config, "score": validation score, "trials": [[config, score], ...]}}`` when tuned.
    tuning: dict[str, Any] = field(default_factory=dict)
    #: Group fairness (:func:`lmrec.evaluation.fairness.fairness_report`): accuracy by user attribute,
    #: exposure by item group; empty unless asked for (``by=`` / ``item_groups=``).
    fairness: dict[str, Any] = field(default_factory=dict)
    #: The exposure re-ranking every list went through (``"none"`` when off).
    exposure: str = "none"
    _summaries: dict[str, dict[str, Interval]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ numbers
    def summary(self, label: str) -> dict[str, Interval]:
        if label not in self._summaries:
            res = self.result(label)
            self._summaries[label] = res.summary(self.n_boot, self.seed)
        return self._summaries[label]

    def result(self, label: str) -> EvalResult:
        for r in self.results:
            if r.model == label:
                return r
        raise KeyError(f"no model {label!r} in this benchmark; have {[r.model for r in self.results]}")

    @property
    def labels(self) -> list[str]:
        return [r.model for r in self.results]

    def best(self, metric: str | None = None) -> str:
        metric = metric or self.main_metric
        return max(self.results, key=lambda r: r.mean(metric)).model

    def compare(self, a: str, b: str, metric: str | None = None, method: str | None = None) -> PairedTest:
        """Paired test of model ``a`` against ``b`` on the same users."""
        metric = metric or self.main_metric
        return paired_test(
            self.result(a).per_user[metric],
            self.result(b).per_user[metric],
            method=method or self.test_method,
            seed=self.seed,
        )

    def comparisons(self) -> dict[str, PairedTest | None]:
        """Every model against the best one on the main metric (``None`` for the best itself)."""
        best = self.best()
        return {lab: None if lab == best else self.compare(lab, best) for lab in self.labels}

    def accuracy_metrics(self) -> list[str]:
        names = ["NDCG", "HR", "Recall", "Precision", "MRR", "MAP"]
        return [f"{m}@{k}" for k in self.ks for m in names]

    def beyond_metrics(self) -> list[str]:
        bk = beyond_k(self.ks)
        out = [f"Coverage@{bk}", f"Gini@{bk}", f"ARP@{bk}", f"Novelty@{bk}", f"Tail@{bk}"]
        if self.results and f"ILD@{bk}" in self.results[0].per_user:
            out.append(f"ILD@{bk}")
        return out

    def headline_metrics(self) -> list[str]:
        bk = beyond_k(self.ks)
        out = [f"NDCG@{k}" for k in self.ks] + [f"HR@{bk}", f"Coverage@{bk}", f"Tail@{bk}"]
        return list(dict.fromkeys(out))

    def groups(self, metric: str | None = None) -> dict[str, dict[str, dict[str, tuple[float, int]]]]:
        """``{"target": {model: {bucket: (mean, n)}}, "history": {...}}`` for the main metric."""
        metric = metric or self.main_metric
        out: dict[str, dict[str, dict[str, tuple[float, int]]]] = {"target": {}, "history": {}}
        for r in self.results:
            out["target"][r.model] = r.by_group(metric, r.target_bucket, BUCKETS)
            g, labels = r.history_groups()
            out["history"][r.model] = r.by_group(metric, g, labels)
        return out

    # ------------------------------------------------------------------ views
    def title(self) -> str:
        return f"{self.dataset} · {self.protocol} · {self.ranking} · seed {self.seed}"

    def table(self, metrics: Sequence[str] | None = None):  # -> rich.table.Table
        """A Rich table: one row per model, ``mean ± 95% CI half-width``, best value in bold, p vs best."""
        from rich.table import Table

        metrics = list(metrics or self.headline_metrics())
        t = Table(
            title=self.title(),
            caption=f"mean ± 95% bootstrap CI over {self.n_users():,} test users; "
            f"p: paired {self.test_method}-test on {self.main_metric} against the best model",
            header_style="bold",
        )
        t.add_column("model", style="cyan", no_wrap=True)
        for m in metrics:
            t.add_column(m, justify="right")
        t.add_column("p vs best", justify="right")
        t.add_column("fit s", justify="right")
        t.add_column("eval s", justify="right")
        best_val = {m: max(r.mean(m) for r in self.results) for m in metrics} if self.results else {}
        for lab, cmp in self.comparisons().items():
            r, s = self.result(lab), self.summary(lab)
            cells = []
            for m in metrics:
                iv = s[m]
                txt = _fmt(iv, m in r.aggregate, compact=True)
                cells.append(f"[bold]{txt}[/]" if np.isclose(iv.mean, best_val[m]) else txt)
            p = "best" if cmp is None else _fmt_p(cmp.p_value)
            t.add_row(lab, *cells, p, f"{r.fit_seconds:.1f}", f"{r.seconds:.1f}")
        return t

    def n_users(self) -> int:
        return len(self.results[0].users) if self.results else 0

    def markdown_table(self, metrics: Sequence[str] | None = None, with_p: bool = True) -> str:
        metrics = list(metrics or self.headline_metrics())
        head = ["model", *metrics] + ([f"p vs best ({self.main_metric})"] if with_p else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        comps = self.comparisons() if with_p else {}
        for r in self.results:
            s = self.summary(r.model)
            row = [r.model] + [_fmt(s[m], m in r.aggregate) for m in metrics]
            if with_p:
                c = comps[r.model]
                row.append("best" if c is None else _fmt_p(c.p_value))
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every number of the benchmark (per-model summaries with CIs, groups, tests, timings, settings)."""
        comps = self.comparisons()
        models = {}
        for r in self.results:
            s = self.summary(r.model)
            c = comps[r.model]
            models[r.model] = {
                "model": r.config.get("_name", None) or r.model,
                "config": {k: v for k, v in r.config.items() if not k.startswith("_")},
                "metrics": {
                    m: {"mean": iv.mean, "ci_low": iv.low, "ci_high": iv.high} for m, iv in s.items()
                },
                "curves": {m: r.curve(m).tolist() for m in ("NDCG", "HR", "Recall")},
                "by_target_popularity": {
                    b: {"mean": v[0], "users": v[1]}
                    for b, v in r.by_group(self.main_metric, r.target_bucket, BUCKETS).items()
                },
                "by_history_length": {
                    b: {"mean": v[0], "users": v[1]}
                    for b, v in r.by_group(self.main_metric, *r.history_groups()).items()
                },
                "vs_best": None
                if c is None
                else {
                    "method": c.method,
                    "metric": self.main_metric,
                    "mean_difference": c.mean_difference,
                    "statistic": c.statistic,
                    "p_value": c.p_value,
                    "n": c.n,
                },
                "fit_seconds": r.fit_seconds,
                "eval_seconds": r.seconds,
                "n_users": int(len(r.users)),
            }
        return {
            "dataset": self.dataset,
            "dataset_stats": self.dataset_stats,
            "protocol": self.protocol,
            "split": self.split_description,
            "split_params": self.split_params,
            "ranking": self.ranking,
            "ks": list(self.ks),
            "seed": self.seed,
            "bootstrap_resamples": self.n_boot,
            "main_metric": self.main_metric,
            "best_model": self.best() if self.results else None,
            "paired_test": self.test_method,
            "command": self.command,
            "tuning_on_validation": self.tuning,
            "exposure_reranking": self.exposure,
            "fairness": self.fairness,
            "models": models,
        }

    def write_report(self, out_dir: str | Path) -> Path:
        """Write ``report.md``, a self-contained ``report.html`` (plots inline), ``results.json`` and
        ``per_user.parquet`` into ``out_dir``; returns the HTML path."""
        paths = write_report(self, Path(out_dir))
        self.out_dir = Path(out_dir)
        self.report_html, self.report_md, self.report_json = paths["html"], paths["md"], paths["json"]
        return paths["html"]


def _fmt(iv: Interval, aggregate: bool = False, compact: bool = False) -> str:
    if np.isnan(iv.mean):
        return "–"
    digits = 2 if abs(iv.mean) >= 10 else (3 if compact else 4)
    if aggregate or iv.high == iv.low:
        return f"{iv.mean:.{digits}f}"
    sep = "±" if compact else " ± "
    return f"{iv.mean:.{digits}f}{sep}{iv.half_width:.{digits}f}"


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _unique_labels(specs: Sequence[ModelSpec]) -> list[tuple[str, Recommender]]:
    """``(label, model)`` pairs; a repeated label gets ``#2``, ``#3``, …"""
    out: list[tuple[str, Recommender]] = []
    for spec in specs:
        label = spec.label
        if label in {lab for lab, _ in out}:
            label = f"{label}#{sum(1 for lab, _ in out if lab.split('#')[0] == label) + 1}"
        out.append((label, spec.build()))
    return out


def run_benchmark(
    dataset: Dataset,
    protocol: str | Split = "leave-one-out",
    models: Sequence[ModelSpecLike] | None = None,
    ks: Sequence[int] = (5, 10, 20),
    out_dir: str | Path | None = None,
    seed: int = 0,
    item_vectors: np.ndarray | None = None,
    progress: bool = True,
    *,
    ranking: str | Ranking = "full",
    protocol_params: Mapping[str, Any] | None = None,
    tune: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    main_metric: str = "NDCG@10",
    n_boot: int = 1000,
    test_method: str = "t",
    command: str | None = None,
    by: str | Sequence[str] | None = None,
    item_groups: str | None = None,
    exposure: ExposurePolicy | None = None,
) -> BenchmarkResult:
    """Fit every model on the protocol's training data, evaluate it once on the test set, and report.

    Parameters
    ----------
    dataset:
        The whole dataset; ``protocol`` splits it (or pass a ready :class:`~lmrec.data.splits.Split`).
    protocol:
        ``"leave-one-out"``, ``"temporal"`` or ``"cold-item"`` (settings in ``protocol_params``).
    models:
        Names, ``(name, config)``, ``(label, name, config)``, models or :class:`ModelSpec` objects; default
        :data:`DEFAULT_MODELS` (content-lm is dropped from the default list when no text vectors can be had).
    ks:
        Cut-offs for the ranking metrics.
    out_dir:
        When given, the report folder (Markdown, self-contained HTML with plots, JSON, per-user Parquet).
    seed:
        Seeds the split (cold-item), sampled negatives and bootstrap resampling.
    item_vectors:
        ``(n_items + 1, d)`` text vectors for text models and intra-list diversity; computed with
        :func:`lmrec.text.item_vectors` when a model needs them and none are given.
    progress:
        Show a progress bar per model (fit, evaluate).
    ranking:
        ``"full"`` (default, whole catalogue, history removed) or ``"sampled"`` / ``"sampled-N"`` (labelled
        ``sampled (N negatives)`` everywhere).
    tune:
        ``{model name: {setting: [values]}}``: grid-search these on ``split.valid`` (full ranking, main
        metric) before the test; the test set is never used to choose.
    main_metric:
        The metric for "best model" and the paired tests.
    by:
        User attributes to break the main metric down by (``"gender,age"``; ``age:6`` for six buckets of a
        numeric attribute): per-group mean ± CI and the best−worst gap, in the report's fairness section.
    item_groups:
        ``"categories"``, an item attribute key (``"brand"``), ``"auto"`` (categories when items have any; the
        default when ``by`` is given) or ``"none"``: each group's exposure share against its catalogue and
        interaction shares.
    exposure:
        An exposure re-ranking applied to every model's lists before they are scored
        (:func:`lmrec.data.exposure.rerank`), so the report shows what it costs.

    Returns
    -------
    BenchmarkResult
        ``.table()`` (Rich), ``.to_dict()``, ``.report_html`` when ``out_dir`` was given.
    """
    rk = Ranking.parse(ranking, seed=seed)
    ks = tuple(sorted({int(k) for k in ks}))
    name_k = main_metric.rsplit("@", 1)
    if len(name_k) != 2 or not name_k[1].isdigit() or int(name_k[1]) not in ks:
        main_metric = f"{name_k[0]}@{beyond_k(ks)}"  # the main metric at a cut-off that is computed
    params = dict(protocol_params or {})
    if isinstance(protocol, Split):
        split = protocol
    else:
        if "seed" in inspect.signature(PROTOCOLS.get(protocol, make_split)).parameters:
            params.setdefault("seed", seed)  # random protocols (cold-item, cold-mixed) follow the run's seed
        split = make_split(dataset, protocol, **params)
    specs = [ModelSpec.of(s) for s in (models if models is not None else DEFAULT_MODELS)]
    needs_vectors = any(s.needs_item_vectors for s in specs)
    if item_vectors is None and needs_vectors:
        try:
            item_vectors, _ = resolve_item_vectors(dataset, None)
        except Exception as exc:  # noqa: BLE001 - any failure to get vectors only drops the text model
            if models is not None:
                raise
            specs = [s for s in specs if not s.needs_item_vectors]
            _say(progress, f"[yellow]no text vectors ({exc}); content-lm left out[/]")
    by_list = parse_by(by)
    default_groups = "auto" if by_list else None
    groups = item_groups_for(dataset, item_groups if item_groups is not None else default_groups)
    if exposure is not None and exposure.active and exposure.max_group_share < 1.0 and groups is None:
        groups = item_groups_for(dataset, "auto")
        if groups is None:
            raise ValueError("a cap per item group needs item groups: the items have no categories; "
                             "pass item_groups= an attribute key")
    tuning: dict[str, Any] = {}
    if tune:
        specs = _apply_tuning(specs, tune, split, main_metric, item_vectors, progress, tuning)
    pairs = _unique_labels(specs)
    results: list[EvalResult] = []
    bar = _progress_bar(progress)
    with bar:
        for label, model in pairs:
            task = bar.add_task(f"{label}: fit", total=len(split.test)) if progress else None
            t0 = time.perf_counter()
            if model.item_map is None:
                model.fit(
                    split.train, split.valid, item_vectors=item_vectors if model.needs_item_vectors else None
                )
            elif model.item_map != split.train.item_map:
                raise ValueError(
                    f"model {label!r} was fitted on another item vocabulary than {dataset.name!r}; "
                    "refit it on this dataset (lmrec train) before evaluating"
                )
            fit_s = time.perf_counter() - t0
            if task is not None:
                bar.update(task, description=f"{label}: evaluate")
            res = evaluate(
                model,
                split.test,
                split.train,
                ks,
                ranking=rk,
                seed=seed,
                item_vectors=item_vectors,
                on_progress=(lambda n, t=task: bar.update(t, advance=n)) if task is not None else None,
                name=label,
                exposure=exposure,
                item_groups=groups,
            )
            res.fit_seconds = fit_s
            res.config = {**res.config, "_name": model.name}
            results.append(res)
            if task is not None:
                bar.update(task, description=f"{label}: done ({res.mean(main_metric):.4f} {main_metric})")
    out = BenchmarkResult(
        dataset=dataset.name,
        protocol=split.protocol,
        split_params=dict(split.params),
        split_description=split.describe(),
        ranking=rk.label,
        ks=ks,
        seed=seed,
        results=results,
        main_metric=main_metric,
        n_boot=n_boot,
        test_method=test_method,
        command=command,
        dataset_stats=dataset.stats().to_dict(),
        train_popularity=split.train.item_popularity.copy(),
        user_ids=dataset.user_map.raws(split.test.users),
        tuning=tuning,
        exposure=exposure.describe() if exposure is not None and exposure.active else "none",
    )
    if by_list or groups is not None:
        out.fairness = fairness_report(results, dataset, split.train.item_popularity, by=by_list,
                                       item_groups=groups, metric=main_metric,
                                       k=int(main_metric.rsplit("@", 1)[1]), n_boot=n_boot, seed=seed)
    if out_dir is not None:
        out.write_report(out_dir)
    return out


def _apply_tuning(
    specs: list[ModelSpec],
    space: Mapping[str, Mapping[str, Sequence[Any]]],
    split: Split,
    metric: str,
    vectors: np.ndarray | None,
    progress: bool,
    record: dict[str, Any],
) -> list[ModelSpec]:
    """Replace each tunable spec's config by its best point on the validation split; log every trial."""
    out: list[ModelSpec] = []
    for spec in specs:
        if spec.model is not None or spec.name not in space:
            out.append(spec)
            continue
        res = tune_fn(spec.name, space[spec.name], split, base=spec.config, metric=metric,
                      item_vectors=vectors)
        _say(progress, f"tuned {spec.label} on validation: {res.best} ({metric} {res.best_score:.4f})")
        record[spec.label] = {
            "metric": metric,
            "best": res.best,
            "score": res.best_score,
            "trials": [[c, s] for c, s in res.trials],
        }
        out.append(ModelSpec(spec.label, spec.name, res.best))
    return out


def _say(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(text)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
