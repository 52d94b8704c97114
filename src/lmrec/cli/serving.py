"""``lmrec serve MODEL_DIR`` and ``lmrec keys create|list|revoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import DEFAULT_STORE, StoreOpt, console, friendly_errors

keys_app = typer.Typer(help="API keys for the service (stored hashed in the store).", no_args_is_help=True)


def serve(
    model_dir: Annotated[Path, typer.Argument(help="A trained model folder (with model.json).")],
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    dev: Annotated[bool, typer.Option("--dev", help="Dev mode: no API keys needed.")] = False,
    models_dir: Annotated[Path | None, typer.Option(
        help="Folder of model versions for hot swaps (default: MODEL_DIR's parent).")] = None,
    text_encoder: Annotated[str | None, typer.Option(
        help="'default', a model name/path, or 'none' (default: $LMREC_TEXT_ENCODER or 'default').")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve a trained model over HTTP: recommendations, similar items, events, items, erasure, dashboard.

    Other settings come from LMREC_* environment variables (see docs/serving.md). Open /dashboard or /docs.
    """
    from lmrec.serving import ServingSettings
    from lmrec.serving import serve as run

    with friendly_errors():
        overrides: dict[str, object] = {"model_dir": model_dir, "store": store}
        if dev:
            overrides["dev_mode"] = True
        if models_dir is not None:
            overrides["models_dir"] = models_dir
        if text_encoder is not None:
            overrides["text_encoder"] = text_encoder
        if not (model_dir / "model.json").exists():
            raise FileNotFoundError(f"{model_dir} is not a trained lmrec model folder (no model.json)")
        run(ServingSettings(**overrides), host=host, port=port, log_level=log_level)  # type: ignore[arg-type]


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", "-s", help="read, write or admin (repeat for several; admin implies the others).")] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create an API key and print it once (only a salted hash is stored)."""
    from lmrec.store import Store
    from lmrec.store.keys import KeyStore

    with friendly_errors(), Store(store) as st:
        key, record = KeyStore(st).create(name, scope or ["read"])
        console.print(f"[bold]{key}[/]")
        console.print(f"[dim]id {record.key_id}, scopes {', '.join(record.scopes)}; "
                      "keep it now: it cannot be shown again[/]")


@keys_app.command("list")
def list_(store: StoreOpt = DEFAULT_STORE) -> None:
    """List keys (ids, names, scopes, state); secrets are never shown."""
    from lmrec.store import Store
    from lmrec.store.keys import KeyStore

    with friendly_errors(), Store(store) as st:
        table = Table("id", "name", "scopes", "created", "state")
        for k in KeyStore(st).list():
            table.add_row(k.key_id, k.name, ", ".join(k.scopes), str(k.created_at)[:19],
                          "active" if k.active else f"revoked {str(k.revoked_at)[:19]}")
        console.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `lmrec keys list`).")],
           store: StoreOpt = DEFAULT_STORE) -> None:
    """Revoke a key; a running service refuses it within a few seconds."""
    from lmrec.store import Store
    from lmrec.store.keys import KeyStore

    with friendly_errors(), Store(store) as st:
        if not KeyStore(st).revoke(key_id):
            raise ValueError(f"no active key with id {key_id!r}")
        console.print(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
