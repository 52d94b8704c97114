"""Loader options from the command line (``-m user_id=customer``, ``-o layout=pairs``) and from a TOML or YAML
file.

A config file holds the options under ``[loader]`` (or at its top level)::

    [loader]
    items = "products.csv"       # paths are relative to the config file
    [loader.mapping]
    user_id = "customer"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

#: Options that name files: a relative path in a config file is taken relative to that file's folder.
PATH_OPTIONS = ("items", "users", "meta")


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a ``.toml`` or ``.yaml`` file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    text = path.read_text()
    if path.suffix in (".toml", ".tml"):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of options at the top level")
        return data
    raise ValueError(f"{path}: config files must be .toml or .yaml")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in items:
        if "=" not in pair:
            raise ValueError(f"{flag} expects name=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if not key.strip():
            raise ValueError(f"{flag} expects name=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def loader_options(
    mapping: list[str], config: Path | None, options: list[str] | None = None
) -> dict[str, Any]:
    """Merge a config file's ``[loader]`` table (or top level) with command-line pairs; the command line wins.

    Parameters
    ----------
    mapping:
        ``lmrec_field=column`` pairs (``-m``), merged into the ``mapping`` option.
    config:
        A TOML/YAML file; file paths in it are resolved against its folder.
    options:
        ``name=value`` pairs (``-o``) passed to the loader as text (``layout=pairs``, ``separator=;``).
    """
    opts: dict[str, Any] = {}
    if config is not None:
        raw = read_config_file(config)
        section = raw.get("loader", raw)
        if not isinstance(section, dict):
            raise ValueError(f"{config}: [loader] must be a table of options")
        opts.update(section)
        for key in PATH_OPTIONS:
            if isinstance(opts.get(key), str) and not Path(opts[key]).expanduser().is_absolute():
                opts[key] = str(config.parent / opts[key])
    opts.update(_pairs(options or [], "--option"))
    pairs = _pairs(mapping, "--map")
    if pairs:
        opts["mapping"] = {**opts.get("mapping", {}), **pairs}
    return opts
