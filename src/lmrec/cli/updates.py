"""``lmrec update MODEL_DIR --since T``: continue training a model on newer events, judged by a guard; and
``lmrec replay``: replay a dataset's last days against a model, never updated vs updated every day."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import DataOpt, DataStoreOpt, choose_data, console, friendly_errors, say_data


def parse_time(value: str | None) -> int | None:
    """Seconds since the epoch from an integer or an ISO date/time (UTC when no zone is given)."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def update(
    model_dir: Annotated[Path, typer.Argument(
        help="The serving model's folder (seqrec, als, itemknn or auto).")],
    since: Annotated[str | None, typer.Option(
        help="Learn from events after this time (seconds since the epoch, or an ISO date/time, UTC). "
             "Default: the folder's update.json (where its last update stopped).")] = None,
    data: DataOpt = None,
    store: DataStoreOpt = None,
    registry: Annotated[Path | None, typer.Option(
        help="Folder of model versions to write the new one into (default: MODEL_DIR's parent, the folder "
             "`lmrec serve` swaps between).")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest NDCG@10 drop against the serving model that is still accepted.")] = 0.01,
    holdout: Annotated[float, typer.Option(
        help="Share of the new events, the most recent, held back to judge the candidate (0: no guard)."
    )] = 0.1,
    passes: Annotated[int | None, typer.Option(
        help="Epochs (SeqRec) or ALS sweeps of the update (default: the model's own, 3).")] = None,
    min_users: Annotated[int, typer.Option(
        help="Fewest users with held-back events the guard judges on.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the update's sampling and shuffling.")] = 0,
) -> None:
    """Continue training MODEL_DIR on the events after --since (new users and items included), compare it with
    the current model on the most recent held-back events, and save it as a new version in the registry.

    The version is marked active (the registry's ACTIVE file) only when its NDCG@10 is not worse than the
    current model's by more than --tolerance; a running service swaps to it with
    POST /v1/admin/models/VERSION/activate (or updates itself: LMREC_UPDATE_INTERVAL_S).
    """
    from lmrec.experiment.updates import (
        UpdatePolicy,
        last_trained_until,
        mark_active,
        read_events,
        update_version,
    )

    with friendly_errors():
        start = parse_time(since)
        if start is None:
            start = last_trained_until(model_dir)
            if start is None:
                raise ValueError(f"give --since: {model_dir} has no update.json saying where its training "
                                 "stopped")
        choice = choose_data(data, store)
        spec = choice.spec or "movielens-100k"
        say_data(spec, choice)
        events, items = read_events(spec, start)
        console.print(f"{events.height:,} events after {start} "
                      f"({datetime.fromtimestamp(start, UTC).isoformat(timespec='seconds')})")
        policy = UpdatePolicy(holdout=holdout, tolerance=tolerance, passes=passes, seed=seed,
                              min_users=min_users)
        out = update_version(model_dir, events, items=items, since=start, registry=registry, policy=policy)
        rep = out.figures["update"]
        console.print(f"updated on {out.figures['events_learned']:,} events ({rep['new_users']:,} new users, "
                      f"{rep['new_items']:,} new items, {rep['passes']} pass(es), "
                      f"{rep['cpu_seconds']:.1f} CPU s); {out.figures['events_held_back']:,} held back")
        console.print(f"version [bold]{out.version}[/] written to {out.path}")
        if out.accepted:
            mark_active(out.path.parent, out.version)
            console.print(f"[green]accepted[/]: {out.reason}; marked active in {out.path.parent}/ACTIVE "
                          f"(a running service: POST /v1/admin/models/{out.version}/activate)")
        else:
            console.print(f"[yellow]not activated[/]: {out.reason}")


def replay(
    model: Annotated[str, typer.Option("--model", help="seqrec, als, itemknn or auto.")] = "itemknn",
    data: DataOpt = None,
    store: DataStoreOpt = None,
    days: Annotated[int, typer.Option(help="Simulated days replayed (the data's last ones).")] = 7,
    day_seconds: Annotated[int, typer.Option(help="Length of a simulated day in seconds.")] = 86_400,
    k: Annotated[int, typer.Option(help="Items shown to each active user per day.")] = 10,
    passes: Annotated[int | None, typer.Option(help="Epochs / sweeps of each update.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fit and the updates.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the per-day figures here (JSON lines).")] = None,
) -> None:
    """Fit a model on everything before the data's last --days days, then replay those days in time order:
    each day the users active that day get k items from their history so far, scored with NDCG@k against what
    they did that day; the model is either never updated or updated after every day."""
    import polars as pl

    from lmrec.data.dataset import Dataset
    from lmrec.evaluation.replay import ModelArm, ReplayConfig, past_events
    from lmrec.evaluation.replay import replay as run
    from lmrec.experiment.updates import read_events
    from lmrec.models import create_model

    with friendly_errors():
        choice = choose_data(data, store)
        spec = choice.spec or "movielens-100k"
        say_data(spec, choice)
        events, items = read_events(spec)
        cfg = ReplayConfig(days=days, day_seconds=day_seconds, k=k, seed=seed)
        past, start = past_events(events, cfg)
        train = Dataset.build(past, items.filter(pl.col("item_id").is_in(past["item_id"].unique().to_list())))
        console.print(f"fitting {model} on {past.height:,} events before {start}; replaying "
                      f"{events.height - past.height:,} events over {days} days")
        never = create_model(model).fit(train)
        daily = create_model(model).fit(train)
        result = run(events, [ModelArm("never", never), ModelArm("daily", daily, 1, passes, seed)], cfg,
                     items=items)
        table = Table("day", "users scored", f"NDCG@{k} never", f"NDCG@{k} daily", "CPU s of the update")
        d = result.days
        for day in range(days):
            n = d.filter((pl.col("day") == day) & (pl.col("arm") == "never")).row(0, named=True)
            u = d.filter((pl.col("day") == day) & (pl.col("arm") == "daily")).row(0, named=True)
            cpu = u.get("update_cpu_seconds")
            table.add_row(str(day), str(n["scored"]), f"{n[f'ndcg@{k}']:.4f}", f"{u[f'ndcg@{k}']:.4f}",
                          "" if cpu is None else f"{cpu:.2f}")
        console.print(table)
        console.print(result.summary())
        if out is not None:
            out.write_text("\n".join(json.dumps(r) for r in d.to_dicts()) + "\n")
            console.print(f"per-day figures written to {out}")


def register(app: typer.Typer) -> None:
    app.command("update")(update)
    app.command("replay")(replay)
