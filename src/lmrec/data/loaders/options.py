"""Loader options from the command line (``-m user_id=customer``) and from a TOML or YAML file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".toml", ".tml"):
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    raise ValueError(f"{path}: config files must be .toml or .yaml")


def loader_options(mapping: list[str], config: Path | None) -> dict[str, Any]:
    """Merge a config file's ``[loader]`` table (or top level) with ``lmrec=column`` pairs; pairs win."""
    opts: dict[str, Any] = {}
    if config is not None:
        raw = read_config_file(config)
        opts.update(raw.get("loader", raw))
    pairs = {}
    for pair in mapping:
        if "=" not in pair:
            raise ValueError(f"--map expects lmrec_name=column, got {pair!r}")
        key, col = pair.split("=", 1)
        pairs[key.strip()] = col.strip()
    if pairs:
        opts["mapping"] = {**opts.get("mapping", {}), **pairs}
    return opts
