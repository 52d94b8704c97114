"""One vocabulary of options across every `lmrec` command: a short flag means one thing everywhere, the data
options are spelled the same in every command that reads data, and old names still work, hidden."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import typer

from lmrec.cli import app

#: Commands that read a dataset: each takes --data/-d and --store.
DATA_COMMANDS = ["train", "evaluate", "benchmark", "tune", "recommend", "seqrec train", "embed items",
                 "embed users", "embed finetune", "similar"]
#: Old option names kept as hidden aliases, by command.
HIDDEN_ALIASES = {
    "train": "--dataset", "evaluate": "--dataset", "benchmark": "--dataset", "tune": "--dataset",
    "recommend": "--dataset", "seqrec train": "--dataset", "embed items": "--source",
    "embed users": "--source", "embed finetune": "--source", "similar": "--source",
}


# Typer vendors its own click (typer._click), so commands and options are recognised by what they have.
def walk(cmd: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from walk(sub, f"{path} {name}".strip())


def commands() -> dict[str, Any]:
    return dict(walk(typer.main.get_command(app)))


def options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option"]


def test_no_short_flag_has_two_meanings() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    n_params = 0
    for path, cmd in commands().items():
        for p in options(cmd):
            n_params += 1
            names = [*p.opts, *p.secondary_opts]
            longs = [o for o in names if o.startswith("--")]
            meaning = longs[0] if longs else p.name or "?"
            for short in (o for o in names if not o.startswith("--")):
                meanings[short].add(meaning)
                where[(short, meaning)].append(path)
    assert n_params > 100, "the walk reached every command's options"
    clashes = {s: {m: where[(s, m)] for m in ms} for s, ms in meanings.items() if len(ms) > 1}
    assert not clashes, f"short flags with several meanings: {clashes}"
    # the vocabulary the docs teach
    assert meanings["-o"] == {"--out"} and meanings["-d"] == {"--data"} and meanings["-m"] == {"--map"}
    assert meanings["-s"] == {"--set"} and meanings["-p"] == {"--protocol"}


def test_every_data_command_has_the_same_data_options_and_hidden_old_names() -> None:
    cmds = commands()
    for path in DATA_COMMANDS:
        opts = {o: p for p in options(cmds[path]) for o in p.opts}
        assert {"--data", "-d", "--store"} <= set(opts), f"{path}: {sorted(opts)}"
        alias = opts[HIDDEN_ALIASES[path]]
        assert alias.hidden, f"{path}: {HIDDEN_ALIASES[path]} should be a hidden alias"


def test_hidden_aliases_still_work_and_stay_out_of_help(tmp_path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "--data" in help_text and "--dataset" not in help_text
    assert "--source" not in runner.invoke(app, ["similar", "--help"]).output
    # --dataset and --data are one option: giving both with different values is refused in one line
    r = runner.invoke(app, ["train", "ease", "--data", "a.csv", "--dataset", "b.csv", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "old names of --data" in " ".join(r.output.split())
    r = runner.invoke(app, ["train", "ease", "--data", "a.csv", "--store", "b.duckdb",
                            "--out", str(tmp_path)])
    assert r.exit_code == 1 and "not both" in r.output and "Traceback" not in r.output
