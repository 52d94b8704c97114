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

from lmrec.cli.common import console, friendly_errors

UsersArg = Annotated[list[str], typer.Argument(help="One or more raw user ids known to the model.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="A saved multitask model folder.")]
ItemsOpt = Annotated[str, typer.Option("--items", "-i",
                                       help="Raw item ids to predict ratings for, comma-separated.")]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Length of the next-item list.")]
AtOpt = Annotated[int | None, typer.Option(
    "--at", help="Start of the value window (Unix seconds); default: just after the last training event.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def predict(users: UsersArg, model: ModelOpt, items: ItemsOpt = "", k: KOpt = 10, at: AtOpt = None,
            as_json: JsonOpt = False) -> None:
    """Next items, ratings of given items, next action type probabilities and predicted value of USER(s).

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

        out = m.predict([user_key(u) for u in users], items=wanted or None, k=k, at=at)
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


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
