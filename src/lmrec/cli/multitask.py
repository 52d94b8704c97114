"""``lmrec predict USER --model DIR``: every prediction of a multi-task model for a user.

Train one with ``lmrec train multitask --data synthetic-ecommerce --out models/mt --protocol none`` (or in
Python, ``MultiTask(...).fit(ds).save(path)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import DataStoreOpt, choose_data, console, friendly_errors, say_data

UsersArg = Annotated[list[str], typer.Argument(help="One or more raw user ids known to the model.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="A saved multitask model folder.")]
ItemsOpt = Annotated[str, typer.Option("--items", "-i",
                                       help="Raw item ids to predict ratings for, comma-separated.")]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Length of the next-item list.")]
AtOpt = Annotated[int | None, typer.Option(
    "--at", help="Start of the value window (Unix seconds); default: just after the last training event.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
PredictDataOpt = Annotated[str | None, typer.Option(
    "--data", "-d", help="A store file (.duckdb) whose events are the users' current history.")]
PredictStoreOpt = DataStoreOpt


def predict(users: UsersArg, model: ModelOpt, items: ItemsOpt = "", k: KOpt = 10, at: AtOpt = None,
            as_json: JsonOpt = False, data: PredictDataOpt = None, store: PredictStoreOpt = None) -> None:
    """Next items, ratings of given items, next action type probabilities and predicted value of USER(s).

    The users' history is their events in the store (lmrec.duckdb here, or --store / --data FILE.duckdb, also
    while `lmrec serve` holds it), or, with no store, their training events in the model.

    Example: `lmrec predict u12 --model models/mt --items i3,i40 -k 5`.
    """
    from lmrec.models import load_model
    from lmrec.models.capabilities import PredictionHeads

    with friendly_errors():
        m = load_model(model)
        if not isinstance(m, PredictionHeads) or not hasattr(m, "predict"):
            raise ValueError(f"{model} holds a {m.name!r} model, which has no prediction heads; "
                             "`lmrec predict` needs a multitask model (use `lmrec recommend` for next items "
                             "only)")
        wanted = [i.strip() for i in items.split(",") if i.strip()]
        if wanted and "rating" not in m.heads:
            raise ValueError(f"--items asks for ratings, but this model has no rating head (its heads: "
                             f"{', '.join(m.heads)}; the rating head is dropped when the training data has "
                             "no ratings)")
        from lmrec.privacy import user_key

        keyed = [user_key(u) for u in users]
        choice = choose_data(data, store)
        context = None
        if choice.spec is not None:
            context = _store_context(m, choice.spec, keyed)
            if not as_json:
                say_data(choice.spec, choice)
        elif not as_json:
            console.print("history: the users' training events in the model (no store here; --store reads "
                          "their current events)")
        out = m.predict(keyed, items=wanted or None, k=k, at=at, context=context)
    if as_json:
        console.print_json(json.dumps(out))
        return
    for res in out:
        t = Table(title=f"user {res['user']}", show_header=True)
        t.add_column("prediction")
        t.add_column("value")
        t.add_row("next items", ", ".join(f"{x['item']} ({x['score']:.2f})" for x in res["next_items"]))
        for item, r in res.get("ratings", {}).items():
            t.add_row(f"rating of {item}", f"{r:.2f}")
        if "next_type" in res:
            t.add_row("next action", ", ".join(f"{name} {p:.0%}" for name, p in
                                               sorted(res["next_type"].items(), key=lambda kv: -kv[1])))
        if "value" in res:
            v = res["value"]
            t.add_row(f"value, next {v['horizon_days']:g} days", f"{v['predicted']:.2f} ({v['kind']})")
        console.print(t)


def _store_context(m: object, spec: str, users: list[str]) -> object:
    """The users' current events in the store ``spec``, in the model's vocabularies."""
    import polars as pl

    from lmrec.serving.heads import context_for
    from lmrec.store import is_store_file, open_read

    if not is_store_file(spec):
        raise ValueError(f"`lmrec predict` reads the users' current events from a store; {spec} is not one "
                         "(give --store FILE.duckdb, or no data to use the training events in the model)")
    st = open_read(spec)
    try:
        marks = ", ".join("?" * len(users))
        events = st.events(f"user_id IN ({marks})", list(users))
    finally:
        st.close()
    if events.height == 0:
        raise ValueError(f"none of {', '.join(users)} has events in {spec}")
    return context_for(m, events.filter(pl.col("user_id").is_in(m.user_map.raw_ids)))  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
