"""``lmrec train | evaluate | benchmark | recommend``: fit and save a model, compare models, export lists.

Each command parses its options into an :class:`~lmrec.experiment.ExperimentConfig` (``--config run.yaml``,
then the flags, then ``--set``), calls one library function (:func:`lmrec.experiment.train`,
:func:`lmrec.experiment.evaluate`, :func:`lmrec.experiment.benchmark`,
:func:`lmrec.models.export.write_recommendations`) and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lmrec.cli.common import (
    DataOpt,
    DatasetAlias,
    DataStoreOpt,
    NprocOpt,
    choose_data,
    console,
    data_config,
    friendly_errors,
    progress,
    relaunch_under_torchrun,
    say_data,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Experiment file (.yaml or .toml: data, split, model(s), eval, tune, seed, out); "
        "flags and --set override it.",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        "-p",
        help="leave-one-out, temporal, cold-item, cold-mixed, or given (the split the data carries: a split "
        "column, RecBole X.train/valid/test.inter, -o split=leave-one-out sequence files).",
        show_default="leave-one-out",
    ),
]
ItemsOpt = Annotated[
    Path | None,
    typer.Option(
        "--items",
        help="An item file read with the data, of any kind: CSV/TSV/Parquet/JSONL table, RecBole "
        ".item/.text, item_id<TAB>text lines (an item2index file beside it maps other ids).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Stop on data problems that are otherwise warnings: a text-based model on item text that is "
        "mostly empty or identical.",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(help="Seed for splits, negatives, bootstrap and model initialisation.", show_default="0"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a setting: key=value (train) or model.key=value (evaluate/benchmark), "
        "or any section.key=value of the config (e.g. eval.ranking=sampled).",
    ),
]
KOpt = Annotated[str | None, typer.Option("--k", help="Cut-offs, comma-separated.", show_default="5,10,20")]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Break NDCG@10 down by these user attributes (comma-separated, e.g. gender,age; age:6 sets the "
        "buckets of a numeric one): per-group mean ± CI, the best−worst gap, and each item group's exposure "
        "share against its catalogue and interaction share.",
    ),
]
ItemGroupsOpt = Annotated[
    str | None,
    typer.Option(
        "--item-groups",
        help="Item groups for exposure shares and --max-group-share: categories, an item attribute key "
        "(brand), or none.",
        show_default="categories when the items have some",
    ),
]
MaxGroupOpt = Annotated[
    float | None,
    typer.Option(
        "--max-group-share",
        help="Exposure re-ranking: no item group (category, brand) above this share of a list, chosen "
        "greedily from a longer candidate list (1 = off).",
        show_default="1",
    ),
]
MinTailOpt = Annotated[
    float | None,
    typer.Option(
        "--min-tail-share",
        help="Exposure re-ranking: at least this share of each list from the long tail (the least popular "
        "items holding the last third of training events; 0 = off).",
        show_default="0",
    ),
]
RankingOpt = Annotated[
    str | None,
    typer.Option(
        "--ranking",
        help="full (default: whole catalogue, history removed) or sampled / sampled-N "
        "(N random negatives, reported as such).",
        show_default="full",
    ),
]


def train(
    model: Annotated[
        str | None,
        typer.Argument(
            help="A registered model name (see `lmrec evaluate --help`); or model.name in --config. "
            "Default: auto (the validation-fitted blend of SeqRec, EASE, ItemKNN and ContentLM)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Model folder to write (required; or out in --config).")
    ] = None,
    data: DataOpt = None,
    store: DataStoreOpt = None,
    dataset: DatasetAlias = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            "-p",
            help="Fit on this protocol's training part (leave-one-out, temporal, cold-item, cold-mixed, "
            "given) "
            "so the folder can be tested honestly, or 'none' to fit on every event "
            "(for serving).",
            show_default="leave-one-out",
        ),
    ] = None,
    items: ItemsOpt = None,
    strict: StrictOpt = False,
    settings: SetOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            help="Stop training after this long (90s, 10m, 1h) and keep the best weights so far "
            "(neural models; the same as --set time_budget=SECONDS).",
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="Text encoder for the item vectors of text models (auto, seqrec fused, content-lm): a name "
            "or a model folder, e.g. one written by `lmrec embed finetune`. Default: all-MiniLM-L6-v2.",
        ),
    ] = None,
    retrievers: Annotated[
        str | None,
        typer.Option(
            "--retrievers",
            help="pipeline: its retrievers, comma-separated among seqrec, ease, itemknn, als, content-lm, "
            "popular, trending, categories (the same as --set retrievers=...). Default: auto.",
        ),
    ] = None,
) -> None:
    """Fit a model and save it as a folder that `lmrec recommend` and `lmrec serve` load.

    Reads the store (lmrec.duckdb here, or --store) unless --data names other data.

    Examples: `lmrec train --out models/auto` (auto, the default model),
    `lmrec train ease --data movielens-100k --out models/ease --set lam=300`,
    `lmrec train --data office.duckdb --encoder models/encoder-ft --out models/auto` (a fine-tuned
    encoder), `lmrec train pipeline --retrievers seqrec,ease,content-lm,popular --out models/pipe` (retrieve
    and rank), or `lmrec train --config run.yaml --set model.lam=300`.
    """
    from lmrec.experiment import build_config
    from lmrec.experiment import train as run_train
    from lmrec.experiment.config import parse_duration

    with friendly_errors():
        budget = {"model.time_budget": parse_duration(time_budget)} if time_budget else {}
        choice = choose_data(data, store, dataset)
        data_flags, data_defaults = data_config(choice)
        cfg = build_config(
            config,
            {
                "model.name": model,
                "out": out,
                **data_flags,
                "data.items": str(items) if items else None,
                "data.strict": True if strict else None,
                "data.encoder": encoder,
                "split.protocol": protocol,
                "seed": seed,
                "model.retrievers": retrievers,
                **budget,
            },
            settings,
            defaults={"model.name": "auto", **data_defaults},
        )
        if cfg.out is None:
            raise ValueError("train needs --out (or out in the config file): the model folder to write")
        say_data(cfg.data.dataset, choice, config)

        def spinner(label: str):  # type: ignore[no-untyped-def]
            bar = progress(transient=True)
            bar.add_task(label, total=None, rate="")
            return bar

        run = run_train(cfg, log=console.print, fitting=spinner)
        valid = run.summary.get("validation")
        if valid is not None:
            console.print(
                f"validation (full ranking): NDCG@10 {valid['NDCG@10']:.4f}, HR@10 {valid['HR@10']:.4f}"
            )
        dp = run.summary.get("privacy")
        if dp:
            console.print(
                f"differential privacy: ε = {dp['epsilon']:.3g} spent at δ = {dp['delta']:.3g} "
                f"per {dp['unit']} "
                f"(target ε {dp['target_epsilon']:g}; noise σ {dp['noise_multiplier']:.3g}, clip "
                f"{dp['max_grad_norm']:g}, sample rate {dp['sample_rate']:.3g}, {dp['steps']} steps, "
                f"{dp['accountant']} accountant; what it covers: docs/seqrec.md, Differential privacy)")
        console.print(f"saved {run.model!r} to [bold]{run.path}[/] in {run.summary['fit_seconds']:.1f} s")


def _evaluate(
    config: Path | None,
    flags: dict[str, object],
    settings: list[str] | None,
    benchmark: bool,
    data: tuple[str | None, str | None, str | None],
) -> None:
    from lmrec.experiment import benchmark as run_benchmark
    from lmrec.experiment import build_config
    from lmrec.experiment import evaluate as run_evaluate

    choice = choose_data(*data)
    data_flags, data_defaults = data_config(choice)
    cfg = build_config(config, {**flags, **data_flags}, settings, several=True, defaults=data_defaults)
    say_data(cfg.data.dataset, choice, config)
    command = "lmrec " + " ".join(sys.argv[1:])
    res = (run_benchmark if benchmark else run_evaluate)(cfg, command=command)
    console.print(res.table())
    if res.exposure != "none":
        console.print(f"exposure re-ranking: {res.exposure}")
    if res.fairness:
        from rich.markdown import Markdown

        from lmrec.evaluation.fairness import fairness_markdown

        console.print(Markdown(fairness_markdown(res.fairness)))
    if res.report_html is not None:
        console.print(
            f"report: [bold]{res.report_html}[/] (Markdown {res.report_md}, numbers {res.report_json})"
        )


def _fairness_flags(by: str | None, item_groups: str | None, max_group_share: float | None,
                    min_tail_share: float | None) -> dict[str, object]:
    return {"eval.by": by, "eval.item_groups": item_groups, "eval.max_group_share": max_group_share,
            "eval.min_tail_share": min_tail_share}


def _names(models: list[str] | None) -> list[str] | None:
    names = [m for arg in models or [] for m in arg.split(",") if m]
    return names or None


def evaluate_cmd(
    models: Annotated[list[str] | None, typer.Argument(help="Model names (default: every baseline).")] = None,
    data: DataOpt = None,
    store: DataStoreOpt = None,
    dataset: DatasetAlias = None,
    protocol: ProtocolOpt = None,
    ks: KOpt = None,
    ranking: RankingOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (md, html, json).")] = None,
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-dir", help="Also evaluate a saved model folder (fitted on this dataset's protocol)."
        ),
    ] = None,
    items: ItemsOpt = None,
    strict: StrictOpt = False,
    by: ByOpt = None,
    item_groups: ItemGroupsOpt = None,
    max_group_share: MaxGroupOpt = None,
    min_tail_share: MinTailOpt = None,
    settings: SetOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fit models on the protocol's training part, test once on its test part, print metric ± 95% CI.

    Examples: `lmrec evaluate itemknn ease --out reports/ml100k`,
    `lmrec evaluate --protocol cold-item content-lm most-popular`,
    `lmrec evaluate ease --ranking sampled` (labelled "sampled (100 negatives)"),
    `lmrec evaluate ease itemknn --by gender,age` (fairness by user group and item genre),
    `lmrec evaluate ease --max-group-share 0.3` (what a 30% cap per genre costs).
    """
    with friendly_errors():
        flags = {
            "models": _names(models),
            "data.items": str(items) if items else None,
            "data.strict": True if strict else None,
            "split.protocol": protocol,
            "eval.ks": ks,
            "eval.ranking": ranking,
            "eval.model_dirs": model_dir or None,
            "out": out,
            "seed": seed,
            **_fairness_flags(by, item_groups, max_group_share, min_tail_share),
        }
        _evaluate(config, flags, settings, benchmark=False, data=(data, store, dataset))


def benchmark(
    data: DataOpt = None,
    store: DataStoreOpt = None,
    dataset: DatasetAlias = None,
    protocol: ProtocolOpt = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated model names (default: every baseline)."),
    ] = None,
    ks: KOpt = None,
    ranking: RankingOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder.")] = None,
    tune: Annotated[
        bool,
        typer.Option(
            help="Grid-search each model's main settings on the validation split first (never on test)."
        ),
    ] = False,
    items: ItemsOpt = None,
    strict: StrictOpt = False,
    by: ByOpt = None,
    item_groups: ItemGroupsOpt = None,
    max_group_share: MaxGroupOpt = None,
    min_tail_share: MinTailOpt = None,
    settings: SetOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Every baseline on one dataset and protocol, with a full report (Markdown, HTML with plots, JSON).

    Reads the store (lmrec.duckdb here, or --store) unless --data names other data. The report folder
    defaults to `reports/benchmark-DATASET-PROTOCOL`.
    """
    with friendly_errors():
        flags = {
            "models": _names([models] if models else None),
            "data.items": str(items) if items else None,
            "data.strict": True if strict else None,
            "split.protocol": protocol,
            "eval.ks": ks,
            "eval.ranking": ranking,
            "out": out,
            "seed": seed,
            "tune.grids": "default" if tune else None,
            **_fairness_flags(by, item_groups, max_group_share, min_tail_share),
        }
        _evaluate(config, flags, settings, benchmark=True, data=(data, store, dataset))


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
    for_: Annotated[
        str,
        typer.Option(
            "--for",
            help="next: each user's next, unseen event, scored from every event the model may know "
            "(training + validation events for a model fitted on a protocol's training part); "
            "test: exactly the protocol's test users and histories, plus a targets file beside --out, "
            "so the lists can be re-scored with any metric code.",
        ),
    ] = "next",
    data: Annotated[
        str | None,
        typer.Option("--data", "-d",
                     help="The data the model was fitted on, if it moved (default: from its training.json)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="The store the model was fitted on, if it moved (as --data)."),
    ] = None,
    dataset: DatasetAlias = None,
    unknown: Annotated[
        str,
        typer.Option(
            "--unknown",
            help="Users in --users the model has never seen: 'error' (the default: named in the error) or "
            "'popular' (they get the most popular items, and the count is printed).",
        ),
    ] = "error",
    nproc: NprocOpt = 1,
    max_group_share: Annotated[
        float,
        typer.Option("--max-group-share", help="Exposure re-ranking: no category above this share of a list, "
                     "chosen greedily from the model's top 10×k (1 = off)."),
    ] = 1.0,
    min_tail_share: Annotated[
        float,
        typer.Option("--min-tail-share", help="Exposure re-ranking: at least this share of each list from "
                     "the long tail (the least popular items holding the last third of training events; "
                     "0 = off)."),
    ] = 0.0,
) -> None:
    """Write every user's top-K (raw ids, best first, with scores) to Parquet, CSV or TSV.

    TSV lines are `user<TAB>item item ...`; Parquet/CSV rows are (user_id, rank, item_id, score). With
    `--for test`, `OUT.targets.csv` holds (user_id, item_id) of each test target. A user in --users the model
    has never seen is an error, unless `--unknown popular` (docs/serving.md: one unknown-user policy).
    """
    from lmrec.data.exposure import ExposurePolicy
    from lmrec.experiment import histories_for
    from lmrec.models import load_model
    from lmrec.models.base import check_unknown_policy
    from lmrec.models.export import merge_parts, read_user_file, write_recommendations
    from lmrec.training.distributed import barrier, cleanup, init_distributed, launched_by_torchrun

    if nproc > 1 and not launched_by_torchrun():
        relaunch_under_torchrun(nproc, "recommend")
        return
    ctx = init_distributed("cpu")  # batch scoring shards users; each process scores on its own CPU threads
    if not ctx.is_main:
        console.quiet = True
    with friendly_errors():
        check_unknown_policy(unknown)
        policy = ExposurePolicy(max_group_share, min_tail_share)
        choice = choose_data(data, store, dataset)
        model = load_model(model_dir)
        which = histories_for(model_dir, for_, choice.spec if choice.explicit else None)
        console.print(which.note)
        user_list = which.users
        hist = which.histories
        if users != "all":
            if for_ == "test":
                raise ValueError("--for test writes the protocol's test users; drop --users")
            from lmrec.privacy import user_key

            wanted = [user_key(u) for u in read_user_file(Path(users))]  # pseudonyms when on
            if hist is not None and user_list is not None:
                by_user = dict(zip(user_list, hist, strict=True))
                hist = [by_user.get(u, []) for u in wanted]
            user_list = wanted
        assert model.user_map is not None
        total = len(model.user_map) if user_list is None else len(user_list)
        shard = (ctx.rank, ctx.world_size) if ctx.enabled else None
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
                histories=hist,
                on_progress=lambda m: bar.update(task, advance=m),
                unknown=unknown,
                shard=shard,
                exposure=policy,
            )
        if shard is not None:
            barrier(ctx)
            if ctx.is_main:
                merge_parts(out, ctx.world_size, fmt)
                n = total
            cleanup(ctx)
            if not ctx.is_main:
                return
            console.print(f"{ctx.world_size} processes wrote their parts; joined in order")
        console.print(f"wrote top-{k} for {n:,} users to [bold]{out}[/]"
                      + (f" (exposure re-ranking: {policy.describe()})" if policy.active else ""))
        if user_list is not None:
            given = dict(zip(user_list, hist, strict=True)) if hist is not None else {}
            fell_back = [u for u in model.unknown_users(user_list) if not given.get(u)]
            if fell_back:
                shown = ", ".join(fell_back[:5]) + (" ..." if len(fell_back) > 5 else "")
                console.print(f"[yellow]fallback:[/] {len(fell_back):,} users unknown to the model got the "
                              f"most popular items (--unknown popular): {shown}")
        if which.targets is not None and which.users is not None:
            import polars as pl

            targets = out.with_name(out.name.split(".")[0] + ".targets.csv")
            pl.DataFrame(
                [(u, i) for u, ts in zip(which.users, which.targets, strict=True) for i in ts],
                schema=["user_id", "item_id"], orient="row",
            ).write_csv(targets)
            console.print(f"wrote their test targets to [bold]{targets}[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate_cmd)
    app.command("benchmark")(benchmark)
    app.command("recommend")(recommend)
