"""`lmrec models` and help(create_model) list every model and setting with its default."""

from __future__ import annotations

from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.models import available_models, create_model, model_catalogue


def test_help_of_create_model_lists_every_model_and_setting() -> None:
    doc = create_model.__doc__ or ""
    for name, _, fields in model_catalogue():
        assert f"\n{name} — " in doc
        for setting, _, default in fields:
            assert f"{setting}={default!r}" in doc
    assert "lam=100.0" in doc  # EASE's regularisation, a known default


def test_lmrec_models_lists_models_and_one_models_settings() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in available_models():
        assert name in res.output
    res = runner.invoke(app, ["models", "seqrec"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "item_repr" in res.output and "'id'" in res.output, res.output
    res = runner.invoke(app, ["models", "nope"])
    assert res.exit_code != 0 and "available" in res.output
