"""One typed, nested experiment configuration, read from YAML/TOML and overridden with ``--set``.

The sections, each validated on construction (unknown keys are an error that names the valid ones)::

    seed: 0                      # splits (cold-item), sampled negatives, bootstrap, model initialisation
    out: models/seqrec           # train: model folder; evaluate/benchmark: report folder; tune: trials JSON
    data:  {dataset: movielens-100k, items: null, strict: false}  # built-in name, data file/folder or saved
                                                # dataset folder; an item file of any kind; strict: errors
    split: {protocol: leave-one-out, seed: null, params: {}}   # leave-one-out | temporal | cold-item |
                                                               # cold-mixed | given | none
    model: {name: seqrec, d_model: 64}          # one model (train, tune): name + its own Config's settings
    models: [ease, {name: itemknn, k: 50}]      # several models (evaluate, benchmark); empty: every baseline
    eval:  {ks: [5, 10, 20], ranking: full, metric: NDCG@10, model_dirs: []}
    tune:  {space: {dropout: [0.2, 0.5]}, mode: random, trials: 8, metric: NDCG@10, grids: {}}

``--set section.key=value`` overrides any of it (``--set tune.space.lr=[0.001,0.003]``); a bare ``key=value``
is a setting of the model, as it always was, and so is ``model.key=value``. For several models
``NAME.key=value`` sets model ``NAME``'s setting (``--set ease.lam=300``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from lmrec.data.loaders.options import read_config_file
from lmrec.data.splits import PROTOCOLS
from lmrec.evaluation.benchmark import DEFAULT_MODELS
from lmrec.evaluation.evaluator import Ranking
from lmrec.evaluation.tuning import metric_cutoff
from lmrec.models import model_class

#: The sections of an :class:`ExperimentConfig` that ``--set section.key=value`` addresses.
SECTIONS = ("data", "split", "model", "models", "eval", "tune")


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, ``"[1,2]"`` → [1, 2], anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_setting(item: str, flag: str = "--set") -> tuple[str, Any]:
    """``"lr=0.002"`` → ``("lr", 0.002)``: the key, stripped, and the value read by :func:`parse_value`."""
    if "=" not in item:
        raise ValueError(f"{flag} expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    if not key.strip():
        raise ValueError(f"{flag} expects key=value, got {item!r}")
    return key.strip(), parse_value(value)


def parse_settings(items: Sequence[str] | None, scoped: bool = False) -> dict[str, Any]:
    """``["k=50", "shrink=10"]`` → ``{"k": 50, "shrink": 10}`` (a ``model.`` prefix is dropped); scoped:
    ``["ease.lam=300"]`` → ``{"ease": {"lam": 300}}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = split_setting(item)
        if scoped:
            if "." not in key:
                raise ValueError(f"--set expects model.key=value here (e.g. ease.lam=300), got {item!r}")
            model, setting = key.split(".", 1)
            out.setdefault(model, {})[setting] = value
        else:
            out[key.split(".", 1)[-1]] = value
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int) -> float:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or plain seconds (``"600"``, 600) → seconds (positive)."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        t = text.strip().lower()
        unit = _UNITS.get(t[-1:], 0)
        try:
            seconds = float(t[:-1] if unit else t) * (unit or 1)
        except ValueError:
            raise ValueError(f"a duration looks like 90s, 10m, 1.5h or seconds, got {text!r}") from None
    if not seconds > 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def parse_ks(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"5,10,20"`` (or a list) → ``(5, 10, 20)``: sorted, distinct, positive cut-offs."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        ks = tuple(sorted({int(k) for k in items if str(k).strip()}))
    except ValueError:
        raise ValueError(f"--k expects comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k expects positive cut-offs, got {text!r}")
    return ks


def model_fields(name: str) -> list[str]:
    """The settings of registered model ``name`` (the fields of its ``Config`` dataclass)."""

    config = model_class(name).Config
    return [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Where the events come from."""

    #: A built-in dataset (``movielens-100k``), a data file/folder a loader reads, a saved dataset folder, or
    #: an lmrec store (``lmrec.duckdb``, filled by ``lmrec data import``).
    dataset: str = "movielens-100k"
    #: An item file read with the events, of any kind (a table, RecBole ``.item``/``.text``, ``id<TAB>text``
    #: lines; see :mod:`lmrec.data.loaders.items`).
    items: str | None = None
    #: Options of the data's loader, as ``lmrec data import -o`` takes them: ``{split: leave-one-out}`` for a
    #: sequence file published with that protocol, ``{layout: pairs}``, ``{mapping: {user_id: visitor}}``...
    options: dict[str, Any] = Field(default_factory=dict)
    #: Data problems that are warnings become errors: a text-based model fitted on item text that cannot
    #: tell the items apart (:class:`~lmrec.models.base.TextQualityWarning`).
    strict: bool = False
    #: The text encoder of models that read item text vectors (``None``: the default MiniLM): a name
    #: ``get_encoder`` knows or a model folder, e.g. one written by ``lmrec embed finetune``.
    encoder: str | None = None


class SplitConfig(_Section):
    """The evaluation protocol."""

    #: ``leave-one-out``, ``temporal``, ``cold-item``, ``cold-mixed``, ``given`` (the split the data
    #: carries: a split column, RecBole ``X.train/valid/test.inter``...), or ``none`` (train on every event;
    #: train only).
    protocol: str = "leave-one-out"
    #: Seed of a random protocol (cold-item); ``None`` uses the experiment's ``seed``.
    seed: int | None = None
    #: The protocol's own settings, e.g. ``{cold_frac: 0.2}`` or ``{test_frac: 0.1}``.
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("protocol")
    @classmethod
    def _known(cls, v: str) -> str:

        if v != "none" and v not in PROTOCOLS:
            known = sorted(set(PROTOCOLS) - {"loo"})
            raise ValueError(f"unknown protocol {v!r}; choose one of {known} or none")
        return v


class ModelConfig(_Section):
    """A registered model and its settings, written flat: ``{name: seqrec, d_model: 64}``.

    The settings are checked against the model's own ``Config`` dataclass (unknown keys are an error);
    ``label`` names it in a benchmark (default: the name).
    """

    name: str
    label: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, Mapping) and not isinstance(data.get("settings", {}), Mapping):
            return data
        if isinstance(data, Mapping):
            rest = {k: v for k, v in data.items() if k not in ("name", "label", "settings")}
            out = {k: data[k] for k in ("name", "label") if k in data}
            out["settings"] = {**dict(data.get("settings") or {}), **rest}
            return out
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        valid = model_fields(self.name)  # an unknown model name is a ValueError here
        unknown = sorted(set(self.settings) - set(valid))
        if unknown:
            raise ValueError(
                f"model {self.name!r} has no setting(s) {unknown}; valid: {', '.join(sorted(valid))}"
            )
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return {"name": self.name, **({"label": self.label} if self.label else {}), **self.settings}


class EvalConfig(_Section):
    """How models are tested."""

    #: Cut-offs of the ranking metrics (``"5,10,20"`` is read too).
    ks: tuple[int, ...] = (5, 10, 20)
    #: ``full`` (whole catalogue, history removed) or ``sampled`` / ``sampled-N`` (N random negatives).
    ranking: str = "full"
    #: The metric that names the best model and that the paired tests compare.
    metric: str = "NDCG@10"
    #: Saved model folders to evaluate beside ``models`` (fitted on this dataset's protocol).
    model_dirs: tuple[Path, ...] = ()
    #: User attributes to break the main metric down by (``"gender,age"``; ``age:6`` sets a numeric
    #: attribute's bucket count): the report's fairness section.
    by: tuple[str, ...] = ()
    #: Item groups for exposure shares and the per-group cap: ``categories``, an item attribute key
    #: (``brand``), ``auto`` (categories when items have any; the default when ``by`` is set) or ``none``.
    item_groups: str | None = None
    #: Exposure re-ranking of every list before it is scored (1 and 0: off): no item group above this share
    #: of a list, and at least this share of long-tail items (:mod:`lmrec.data.exposure`).
    max_group_share: float = Field(1.0, gt=0.0, le=1.0)
    min_tail_share: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("by", mode="before")
    @classmethod
    def _by(cls, v: Any) -> tuple[str, ...]:
        items = v.split(",") if isinstance(v, str) else list(v or [])
        return tuple(s.strip() for s in items if str(s).strip())

    @field_validator("ks", mode="before")
    @classmethod
    def _ks(cls, v: Any) -> tuple[int, ...]:
        return parse_ks(v if isinstance(v, str) else [v] if isinstance(v, int) else list(v))

    @field_validator("ranking")
    @classmethod
    def _ranking(cls, v: str) -> str:

        Ranking.parse(v)
        return v


class TuneConfig(_Section):
    """A search over settings, scored on the validation split only."""

    #: Candidate values per setting of ``model`` (``lmrec tune``), e.g. ``{dropout: [0.2, 0.5]}``.
    space: dict[str, list[Any]] = Field(default_factory=dict)
    mode: Literal["grid", "random"] = "random"
    #: Random trials (a grid tries every point).
    trials: int = Field(8, ge=1)
    #: ``NAME@K``; ``K`` must be one of ``eval.ks``.
    metric: str = "NDCG@10"
    #: Grids per model name searched before a benchmark's test, or ``"default"`` for lmrec's small grids of
    #: the models being evaluated (``lmrec benchmark --tune``).
    grids: dict[str, dict[str, list[Any]]] | Literal["default"] = Field(default_factory=dict)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:

        metric_cutoff(v)
        return v


class ExperimentConfig(_Section):
    """Everything one run of ``train``, ``evaluate``, ``benchmark`` or ``tune`` reads."""

    seed: int = 0
    out: Path | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig | None = None
    models: tuple[ModelConfig, ...] = ()
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _space_fits_model(self) -> ExperimentConfig:
        if self.model is not None and self.tune.space:
            valid = model_fields(self.model.name)
            unknown = sorted(set(self.tune.space) - set(valid))
            if unknown:
                raise ValueError(
                    f"tune.space: model {self.model.name!r} has no setting(s) {unknown}; "
                    f"valid: {', '.join(sorted(valid))}"
                )
        return self

    @property
    def split_seed(self) -> int:
        return self.seed if self.split.seed is None else self.split.seed

    def split_params(self) -> dict[str, Any]:
        """Keyword arguments of :func:`lmrec.data.splits.make_split`; the seed goes to every protocol that
        draws at random (one that takes a ``seed``: cold-item, cold-mixed)."""
        params = dict(self.split.params)
        fn = PROTOCOLS.get(self.split.protocol)
        if fn is not None and "seed" in inspect.signature(fn).parameters:
            params.setdefault("seed", self.split_seed)
        return params

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, strings, numbers) without unset values: what :meth:`write` saves."""
        return _drop_none(self.model_dump(mode="json"))

    def write(self, path: str | Path) -> Path:
        """Save as ``.yaml``/``.yml`` or ``.toml``; :func:`load_config` reads it back to an equal config."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(data, sort_keys=False))
        elif path.suffix in (".toml", ".tml"):
            import tomli_w

            path.write_text(tomli_w.dumps(data))
        else:
            raise ValueError(f"{path}: config files must be .toml or .yaml")
        return path


def _drop_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


def validate(raw: Mapping[str, Any]) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from plain data; every problem in one :class:`ValueError` naming keys."""
    _check_keys(raw)
    try:
        return ExperimentConfig.model_validate(dict(raw))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}")
        raise ValueError("; ".join(lines)) from None


def _check_keys(raw: Mapping[str, Any]) -> None:
    """Unknown keys of the top level and of every fixed section, named with the valid ones."""
    top = ExperimentConfig.model_fields
    for key, value in raw.items():
        if key not in top:
            raise ValueError(f"unknown setting {key!r}; valid top-level keys: {', '.join(top)}")
        section = {"data": DataConfig, "split": SplitConfig, "eval": EvalConfig, "tune": TuneConfig}.get(key)
        if section is not None and isinstance(value, Mapping):
            extra = sorted(set(value) - set(section.model_fields))
            if extra:
                valid = ", ".join(section.model_fields)
                raise ValueError(f"unknown setting '{key}.{extra[0]}'; valid keys of {key}: {valid}")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a ``.yaml`` or ``.toml`` experiment file."""
    return validate(read_config_file(Path(path)))


def build_config(
    file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    settings: Sequence[str] | None = None,
    *,
    several: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Merge, later winning: ``defaults`` < the config ``file`` < command-line ``flags`` < ``--set`` items.

    Parameters
    ----------
    flags, defaults:
        ``{"data.dataset": "movielens-100k", "seed": 3, ...}``: dotted paths; ``None`` values are skipped
        (a flag that was not given).
    settings:
        ``--set`` items, see the module docstring.
    several:
        The command runs several models (evaluate, benchmark): ``NAME.key=value`` addresses model ``NAME``,
        a bare key is an error, and an empty model list becomes every baseline.
    """
    raw: dict[str, Any] = {}
    for path, value in (defaults or {}).items():
        _put(raw, path.split("."), value)
    if file is not None:
        for key, value in read_config_file(Path(file)).items():
            raw[key] = value
    for path, value in (flags or {}).items():
        if value is not None:
            _put(raw, path.split("."), value)
    scoped: dict[str, dict[str, Any]] = {}
    for item in settings or []:
        key, value = split_setting(item)
        path = key.split(".")
        if len(path) > 1 and path[0] in SECTIONS and not (several and path[0] == "model"):
            _put(raw, path, value)
        elif several:
            if len(path) == 1 or path[0] == "model":
                raise ValueError(f"--set expects model.key=value here (e.g. ease.lam=300), got {item!r}")
            scoped.setdefault(path[0], {})[".".join(path[1:])] = value
        else:
            _put(raw, ["model", key.split(".", 1)[-1]], value)
    if several:
        _merge_scoped(raw, scoped)
    return validate(raw)


def _put(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[path[0]][path[1]]… = value``, reading a model given as a bare name as ``{name: …}``."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part == "model":
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child = dict(child)
        node = child
    node[path[-1]] = value


def _merge_scoped(raw: dict[str, Any], scoped: dict[str, dict[str, Any]]) -> None:

    models = [m if isinstance(m, Mapping) else {"name": m} for m in raw.get("models") or []]
    if not models and not (raw.get("eval") or {}).get("model_dirs"):
        models = [{"name": name, **cfg} for name, cfg in DEFAULT_MODELS]
    unknown = set(scoped) - {m.get("name") for m in models}
    if unknown:
        raise ValueError(f"--set names model(s) {sorted(unknown)} that are not being evaluated")
    raw["models"] = [{**m, **scoped.get(str(m.get("name")), {})} for m in models]
