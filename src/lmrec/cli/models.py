"""``lmrec train | evaluate | benchmark | recommend``: fit and save a model, compare models, export lists.

Each command parses its options, calls one library function (:func:`lmrec.evaluation.run_benchmark`,
:func:`lmrec.models.export.write_recommendations`, ``Recommender.fit``/``save``) and prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lmrec.cli.common import console, friendly_errors, progress

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="A built-in dataset (movielens-100k), a data file/folder, or a saved dataset folder.",
    ),
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", "-p", help="leave-one-out, temporal or cold-item.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for splits, negatives, bootstrap and model initialisation.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a setting: key=value (train) or model.key=value (evaluate/benchmark)."
    ),
]
KOpt = Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")]
RankingOpt = Annotated[
    str,
    typer.Option(
        "--ranking",
        help="full (default: whole catalogue, history removed) or sampled / sampled-N "
        "(N random negatives, reported as such).",
    ),
]


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, ``"[1,2]"`` → [1, 2], anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(items: list[str] | None, scoped: bool = False) -> dict[str, Any]:
    """``["k=50", "shrink=10"]`` → ``{"k": 50, "shrink": 10.0}``; scoped: ``["ease.lam=300"]`` →
    ``{"ease": {"lam": 300}}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if scoped:
            if "." not in key:
                raise ValueError(f"--set expects model.key=value here (e.g. ease.lam=300), got {item!r}")
            model, setting = key.split(".", 1)
            out.setdefault(model, {})[setting] = parse_value(value)
        else:
            out[key.split(".", 1)[-1] if "." in key else key] = parse_value(value)
    return out


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise ValueError(f"--k expects comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k expects positive cut-offs, got {text!r}")
    return ks


def load_any_dataset(spec: str):  # -> Dataset
    """A saved dataset folder (``dataset.json``), a built-in name, or a file/folder a loader understands."""
    from lmrec.data.dataset import Dataset
    from lmrec.data.loaders import load_dataset

    if (Path(spec) / "dataset.json").exists():
        return Dataset.load(spec)
    ds, _ = load_dataset(spec)
    return ds


def train(
    model: Annotated[str, typer.Argument(help="A registered model name (see `lmrec evaluate --help`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    dataset: DatasetOpt = "movielens-100k",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            "-p",
            help="Fit on this protocol's training part (leave-one-out, temporal, cold-item) "
            "so the folder can be tested honestly, or 'none' to fit on every event "
            "(for serving).",
        ),
    ] = "leave-one-out",
    settings: SetOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Fit a model and save it as a folder that `lmrec recommend` and `lmrec serve` load.

    Example: `lmrec train ease --dataset movielens-100k --out models/ease --set lam=300`.
    """
    from lmrec.data.splits import make_split
    from lmrec.evaluation import evaluate
    from lmrec.models import create_model, model_class

    with friendly_errors():
        cfg = parse_settings(settings)
        cls = model_class(model)
        if "seed" in {f for f in getattr(cls.Config, "__dataclass_fields__", {})} and "seed" not in cfg:
            cfg["seed"] = seed
        rec = create_model(model, **cfg)
        ds = load_any_dataset(dataset)
        info: dict[str, Any] = {
            "model": model,
            "config": cfg,
            "dataset": ds.name,
            "protocol": protocol,
            "seed": seed,
        }
        if protocol == "none":
            train_ds, valid, split = ds, None, None
        else:
            split = make_split(ds, protocol, **({"seed": seed} if protocol == "cold-item" else {}))
            train_ds, valid = split.train, split.valid
            info["split"] = split.describe()
            info["split_params"] = split.params
        console.print(
            f"fitting [cyan]{model}[/] on {train_ds.n_events:,} events of {ds.name} "
            f"({'all events' if split is None else split.describe()})"
        )
        t0 = time.perf_counter()
        with progress(transient=True) as bar:
            bar.add_task(f"fit {model}", total=None, rate="")
            rec.fit(train_ds, valid)
        info["fit_seconds"] = round(time.perf_counter() - t0, 3)
        if split is not None and len(split.valid):
            res = evaluate(rec, split.valid, split.train, (10,))
            info["validation"] = {
                "NDCG@10": res.mean("NDCG@10"),
                "HR@10": res.mean("HR@10"),
                "ranking": res.ranking,
            }
            console.print(
                f"validation (full ranking): NDCG@10 {res.mean('NDCG@10'):.4f}, HR@10 {res.mean('HR@10'):.4f}"
            )
        path = rec.save(out)
        (path / "training.json").write_text(json.dumps(info, indent=2, default=str))
        console.print(f"saved {rec!r} to [bold]{path}[/] in {info['fit_seconds']:.1f} s")


def _model_specs(
    models: list[str] | None, model_dirs: list[Path] | None, settings: dict[str, Any]
) -> list[Any]:
    from lmrec.evaluation.benchmark import DEFAULT_MODELS
    from lmrec.models import load_model

    specs: list[Any] = []
    names = [m for arg in models or [] for m in arg.split(",") if m]
    if not names and not model_dirs:
        names = [n for n, _ in DEFAULT_MODELS]
    unknown = set(settings) - set(names)
    if unknown:
        raise ValueError(f"--set names model(s) {sorted(unknown)} that are not being evaluated")
    defaults = dict(DEFAULT_MODELS)
    for name in names:
        specs.append((name, {**defaults.get(name, {}), **settings.get(name, {})}))
    for d in model_dirs or []:
        specs.append((f"{d.name}", load_model(d)))
    return specs


def _run(
    dataset: str,
    protocol: str,
    specs: list[Any],
    ks: str,
    ranking: str,
    out: Path | None,
    seed: int,
    tune: dict[str, Any] | None,
) -> None:
    import sys

    from lmrec.evaluation import run_benchmark

    ds = load_any_dataset(dataset)
    command = "lmrec " + " ".join(sys.argv[1:])
    res = run_benchmark(
        ds,
        protocol,
        specs,
        ks=parse_ks(ks),
        out_dir=out,
        seed=seed,
        ranking=ranking,
        tune=tune,
        command=command,
    )
    console.print(res.table())
    if res.report_html is not None:
        console.print(
            f"report: [bold]{res.report_html}[/] (Markdown {res.report_md}, numbers {res.report_json})"
        )


def evaluate_cmd(
    models: Annotated[list[str] | None, typer.Argument(help="Model names (default: every baseline).")] = None,
    dataset: DatasetOpt = "movielens-100k",
    protocol: ProtocolOpt = "leave-one-out",
    ks: KOpt = "5,10,20",
    ranking: RankingOpt = "full",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (md, html, json).")] = None,
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-dir", help="Also evaluate a saved model folder (fitted on this dataset's protocol)."
        ),
    ] = None,
    settings: SetOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Fit models on the protocol's training part, test once on its test part, print metric ± 95% CI.

    Examples: `lmrec evaluate itemknn ease --out reports/ml100k`,
    `lmrec evaluate --protocol cold-item content-lm most-popular`,
    `lmrec evaluate ease --ranking sampled` (labelled "sampled (100 negatives)").
    """
    with friendly_errors():
        specs = _model_specs(models, model_dir, parse_settings(settings, scoped=True))
        _run(dataset, protocol, specs, ks, ranking, out, seed, None)


def benchmark(
    dataset: DatasetOpt = "movielens-100k",
    protocol: ProtocolOpt = "leave-one-out",
    models: Annotated[
        str | None,
        typer.Option("--models", "-m", help="Comma-separated model names (default: every baseline)."),
    ] = None,
    ks: KOpt = "5,10,20",
    ranking: RankingOpt = "full",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder.")] = None,
    tune: Annotated[
        bool,
        typer.Option(
            help="Grid-search each model's main settings on the validation split first (never on test)."
        ),
    ] = False,
    settings: SetOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Every baseline on one dataset and protocol, with a full report (Markdown, HTML with plots, JSON).

    The report folder defaults to `reports/benchmark-DATASET-PROTOCOL`.
    """
    from lmrec.evaluation.benchmark import TUNING_GRIDS

    with friendly_errors():
        specs = _model_specs([models] if models else None, None, parse_settings(settings, scoped=True))
        out = out or Path("reports") / f"benchmark-{Path(dataset).name}-{protocol}"
        grids = {n: g for n, g in TUNING_GRIDS.items() if n in {s[0] for s in specs}} if tune else None
        _run(dataset, protocol, specs, ks, ranking, out, seed, grids)


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="A saved model folder (lmrec train).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet, .csv or .tsv.")],
    users: Annotated[
        str, typer.Option(help="'all' (every known user) or a file of user ids, one per line.")
    ] = "all",
    k: Annotated[int, typer.Option("--k", help="Items per user.")] = 10,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet, csv or tsv (default: by extension).")
    ] = None,
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already has.")] = False,
    batch_size: Annotated[int, typer.Option(help="Users per batch.")] = 2048,
) -> None:
    """Write every user's top-K (raw ids, best first, with scores) to Parquet, CSV or TSV.

    TSV lines are `user<TAB>item item ...`; Parquet/CSV rows are (user_id, rank, item_id, score).
    """
    from lmrec.models import load_model
    from lmrec.models.export import read_user_file, write_recommendations

    with friendly_errors():
        model = load_model(model_dir)
        user_list = None if users == "all" else read_user_file(Path(users))
        assert model.user_map is not None
        total = len(model.user_map) if user_list is None else len(user_list)
        with progress() as bar:
            task = bar.add_task(f"recommending with {model.name}", total=total, rate="")
            n = write_recommendations(
                model,
                user_list,
                k,
                out,
                fmt=fmt,
                batch_size=batch_size,
                exclude_seen=not include_seen,
                on_progress=lambda m: bar.update(task, advance=m),
            )
        console.print(f"wrote top-{k} for {n:,} users to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate_cmd)
    app.command("benchmark")(benchmark)
    app.command("recommend")(recommend)
