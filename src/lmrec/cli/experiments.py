"""``lmrec experiments create|list|show|stop``: online A/B experiments, in the store file or through a running
service (``--url``, an admin key), as ``lmrec keys`` does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lmrec.cli.common import DEFAULT_STORE, StoreOpt, console, friendly_errors
from lmrec.cli.serving import AdminKeyOpt, UrlOpt, _api, _open_store

experiments_app = typer.Typer(
    help="Online A/B experiments: arms of model versions served to shares of users, with per-arm metrics.",
    no_args_is_help=True)

_ARM = re.compile(r"^(?P<name>[^=]+)=(?P<version>[^:]+):(?P<share>[0-9.eE+-]+)$")


def parse_arm(text: str) -> dict[str, Any]:
    """``NAME=VERSION:SHARE`` (``control=v3:0.5``) → an arm."""
    m = _ARM.match(text.strip())
    if m is None:
        raise ValueError(f"--arm {text!r}: write NAME=VERSION:SHARE, e.g. control=v3:0.5")
    try:
        share = float(m["share"])
    except ValueError:
        raise ValueError(f"--arm {text!r}: {m['share']!r} is not a number") from None
    return {"name": m["name"], "version": m["version"], "share": share}


@experiments_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    arm: Annotated[list[str], typer.Option(
        "--arm", help="NAME=VERSION:SHARE, once per arm; the first is the control. VERSION is a folder of "
                      "the models directory; shares add up to at most 1 (other users get the active "
                      "model).")],
    salt: Annotated[str, typer.Option(help="Bucketing key (default: the name).")] = "",
    window: Annotated[float, typer.Option(
        "--window", help="Hours after an answer during which events on its items count for it.")] = 24.0,
    alpha: Annotated[float, typer.Option(help="Significance level of the tests.")] = 0.05,
    description: Annotated[str, typer.Option(help="What the experiment tests.")] = "",
    models_dir: Annotated[Path | None, typer.Option(
        help="Without --url: check that every arm's version is a model folder here.")] = None,
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None,
) -> None:
    """Create and start an experiment. Through --url the service loads every arm's version first and routes
    users from its next request; in a store file, a service started on it later does."""
    from lmrec.evaluation.abtest import Arm, ExperimentSpec
    from lmrec.store.experiments import ExperimentTable

    with friendly_errors():
        arms = [parse_arm(a) for a in arm]
        body = {"name": name, "arms": arms, "salt": salt, "window_s": int(round(window * 3600)),
                "alpha": alpha, "description": description}
        spec = ExperimentSpec(name, tuple(Arm(**a) for a in arms), salt=salt, window_s=body["window_s"],
                              alpha=alpha, description=description)  # checked here before anything is sent
        if url:
            out = _api(url, key, "POST", "/v1/admin/experiments", json=body)
        else:
            if models_dir is not None:
                missing = [a.version for a in spec.arms
                           if not (models_dir / a.version / "model.json").is_file()]
                if missing:
                    raise FileNotFoundError(f"no model version {', '.join(missing)} in {models_dir}")
            with _open_store(store) as st:
                out = ExperimentTable(st).create({**spec.to_dict(), "arms": arms})
        console.print(f"started experiment [bold]{name}[/]: " +
                      ", ".join(f"{a['name']}={a['version']} ({a['share']:.0%})" for a in out["arms"]))


def _records(store: str, url: str | None, key: str | None) -> list[dict[str, Any]]:
    from lmrec.store import open_read
    from lmrec.store.experiments import ExperimentTable, iso

    if url:
        return _api(url, key, "GET", "/v1/admin/experiments")  # type: ignore[no-any-return]
    with open_read(store) as st:
        return [{**r, "created_at": iso(r["created_at"]), "stopped_at": iso(r["stopped_at"])}
                for r in ExperimentTable(st).list()]


@experiments_app.command("list")
def list_(store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None) -> None:
    """List experiments: arms, state, window."""
    with friendly_errors():
        table = Table("name", "arms (name=version share)", "window", "created", "state")
        for r in _records(store, url, key):
            arms = ", ".join(f"{a['name']}={a['version']} {a['share']:.0%}" for a in r["arms"])
            table.add_row(r["name"], arms,
                          f"{r['window_s'] / 3600:g} h", str(r["created_at"])[:19],
                          "running" if not r["stopped_at"] else f"stopped {str(r['stopped_at'])[:19]}")
        console.print(table)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, d: int = 3) -> str:
    return "–" if x is None else f"{x:.{d}f}"


@experiments_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The experiment's name.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
         store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None) -> None:
    """Per-arm metrics with intervals, and each arm against the control (test, p-value, Holm-adjusted)."""
    with friendly_errors():
        if url:
            rep = _api(url, key, "GET", f"/v1/admin/experiments/{name}")
        else:
            from lmrec.evaluation.abtest import experiment_report
            from lmrec.store import open_read
            from lmrec.store.experiments import ExperimentTable

            with open_read(store) as st:
                t = ExperimentTable(st)
                record = t.get(name)
                if record is None:
                    raise ValueError(f"no experiment named {name!r} in {store}")
                rep = experiment_report(record, t.user_outcomes(name, int(record["window_s"])))
        if as_json:
            print(json.dumps(rep, indent=2, default=str))
            return
        level = f"{1 - rep['alpha']:.0%}"
        console.print(f"[bold]{rep['name']}[/] ({rep['status']}), window {rep['window_s'] / 3600:g} h, "
                      f"{level} intervals")
        arms = Table("arm", "version", "users", "answers", "click-through", "add-to-cart", "conversion",
                     "revenue/user")
        for a in rep["arms"]:
            m = a["metrics"]
            cells = [f"{_pct(m[k]['value'])} [{_pct(m[k]['low'])}, {_pct(m[k]['high'])}]"
                     for k in ("click_through", "add_to_cart", "conversion")]
            r = m["revenue_per_user"]
            arms.add_row(a["arm"], a["version"], str(a["users"]), str(a["answers"]), *cells,
                         f"{_num(r['value'], 2)} [{_num(r['low'], 2)}, {_num(r['high'], 2)}]")
        console.print(arms)
        tests = Table("metric", "arm vs control", "test", "difference [interval]", "p", "p adjusted", "")
        for t in rep["tests"]:
            scale = 1 if t["metric"] == "revenue_per_user" else 100
            unit = "" if scale == 1 else " pt"

            def f(x: float | None, s: int = scale, u: str = unit) -> str:
                return "–" if x is None else f"{s * x:+.2f}{u}"

            tests.add_row(t["metric"], f"{t['arm']} vs {t['control']}", t["test"],
                          f"{f(t['difference'])} [{f(t['low'])}, {f(t['high'])}]", _num(t["p_value"], 4),
                          _num(t["p_adjusted"], 4), "[green]significant[/]" if t["significant"] else "")
        console.print(tests)
        console.print(f"[dim]correction: {rep['correction']}[/]")


@experiments_app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="The experiment's name.")],
         store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None) -> None:
    """Stop an experiment: its users get the active model again (its answers and metrics stay)."""
    from lmrec.store.experiments import ExperimentTable

    with friendly_errors():
        if url:
            _api(url, key, "POST", f"/v1/admin/experiments/{name}/stop")
        else:
            with _open_store(store) as st:
                if ExperimentTable(st).stop(name) is None:
                    raise ValueError(f"no running experiment named {name!r}")
        console.print(f"stopped {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")
