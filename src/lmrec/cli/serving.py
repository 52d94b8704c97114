"""``lmrec serve MODEL_DIR``, ``lmrec keys create|list|revoke``, ``lmrec audit``, ``lmrec backup|restore``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

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
    runtime: Annotated[str | None, typer.Option(
        help="How SeqRec scores: torch, int8 or onnx (default: $LMREC_RUNTIME, else the model folder's "
             "serving.json from `lmrec seqrec export`, else torch).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes serving on this port; more than one needs a PostgreSQL store "
                    "(--store postgresql://...), which they share as one service.")] = 1,
) -> None:
    """Serve a trained model over HTTP: recommendations, similar items, events, items, erasure, dashboard.

    Other settings come from LMREC_* environment variables (see docs/serving.md). Open /dashboard or /docs.
    """
    from lmrec.models.serving_forms import resolve_runtimes
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
        if runtime is not None:
            overrides["runtime"] = runtime
        if not (model_dir / "model.json").exists():
            raise FileNotFoundError(f"{model_dir} is not a trained lmrec model folder (no model.json)")
        settings = ServingSettings(**overrides)  # type: ignore[arg-type]
        # checked before the server starts: a runtime the folder cannot give is an error now, not at a request
        chosen = resolve_runtimes(model_dir, settings.runtime)
        _say_store(store, model_dir)
        if chosen:
            console.print("runtime: " + ", ".join(f"[bold]{p}[/] {r}" for p, r in chosen.items()))
        run(settings, host=host, port=port, log_level=log_level, workers=workers)


def _say_store(store: str, model_dir: Path) -> None:
    """Print which store the service uses and its dataset; warn when the model was fitted on another one."""
    from lmrec.store import is_postgres_url, open_read

    if not is_postgres_url(store) and not Path(store).exists():
        console.print(f"store: [bold]{store}[/] (new: events sent to the service are stored there)")
        return
    try:
        with open_read(store) as st:
            held = st.dataset_name()
    except Exception as exc:  # noqa: BLE001 (the service reports its own error when it opens the file)
        console.print(f"store: [bold]{store}[/] ({str(exc).splitlines()[0]})")
        return
    console.print(f"store: [bold]{store}[/]" + (f" (dataset {held!r})" if held else ""))
    info = model_dir / "training.json"
    fitted_on = json.loads(info.read_text()).get("dataset") if info.exists() else None
    if held and fitted_on and fitted_on != held:
        console.print(f"[yellow]warning:[/] {model_dir} was fitted on {fitted_on!r} but {store} holds "
                      f"{held!r}: its users and items may not be the store's (give the model's store with "
                      "--store)")


UrlOpt = Annotated[str | None, typer.Option(
    "--url", envvar="LMREC_URL",
    help="A running service (http://127.0.0.1:8000): act through its admin API, which works while it holds "
         "the store. Without it, the store file is opened directly (only when no service runs).")]
AdminKeyOpt = Annotated[str | None, typer.Option(
    "--key", envvar="LMREC_ADMIN_KEY", help="An admin API key for --url (not needed in dev mode).")]


def _api(url: str, key: str | None, method: str, path: str, **kw: Any) -> Any:
    """Call the running service's admin API; its error body becomes one line."""
    import httpx

    headers = {"X-API-Key": key} if key else {}
    try:
        r = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=60, **kw)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach the service at {url}: {exc}") from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        raise RuntimeError(f"the service answered {r.status_code}: {detail}")
    return r.json()


@contextlib.contextmanager
def _open_store(path: str) -> Iterator[Any]:
    """The store file, or a clear message when a running service holds it."""
    import duckdb

    from lmrec.store import Store

    try:
        st = Store(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise RuntimeError(f"{path} is held by a running service; pass --url http://HOST:PORT and --key "
                               "ADMIN_KEY (or LMREC_URL / LMREC_ADMIN_KEY) to act through it") from None
        raise
    try:
        yield st
    finally:
        st.close()


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="read, write or admin (repeat for several; admin implies the others).")] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="Requests per second this key may send (default: the service's "
                       "LMREC_RATE_LIMIT_PER_S).",
    )] = None,
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None,
) -> None:
    """Create an API key and print it once (only a salted hash is stored)."""
    from lmrec.store.keys import KeyStore

    with friendly_errors():
        if url:
            out = _api(url, key, "POST", "/v1/admin/keys",
                       json={"name": name, "scopes": scope or ["read"], "rate_limit": rate})
            full, key_id, scopes = out["key"], out["key_id"], out["scopes"]
        else:
            with _open_store(store) as st:
                full, record = KeyStore(st).create(name, scope or ["read"], rate)
                key_id, scopes = record.key_id, list(record.scopes)
        console.print(f"[bold]{full}[/]")
        console.print(f"[dim]id {key_id}, scopes {', '.join(scopes)}; "
                      "keep it now: it cannot be shown again[/]")


@keys_app.command("list")
def list_(store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None) -> None:
    """List keys (ids, names, scopes, rate, state); secrets are never shown."""
    from lmrec.store.keys import KeyStore

    with friendly_errors():
        if url:
            rows = _api(url, key, "GET", "/v1/admin/keys")
        else:
            with _open_store(store) as st:
                rows = [{"key_id": k.key_id, "name": k.name, "scopes": list(k.scopes),
                         "created_at": str(k.created_at), "revoked_at": k.revoked_at and str(k.revoked_at),
                         "rate_limit": k.rate_limit} for k in KeyStore(st).list()]
        table = Table("id", "name", "scopes", "rate/s", "created", "state")
        for k in rows:
            table.add_row(k["key_id"], k["name"], ", ".join(k["scopes"]),
                          "default" if k["rate_limit"] is None else f"{k['rate_limit']:g}",
                          str(k["created_at"])[:19],
                          "active" if not k["revoked_at"] else f"revoked {str(k['revoked_at'])[:19]}")
        console.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `lmrec keys list`).")],
           store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None) -> None:
    """Revoke a key. With --url the running service refuses it from its next request; without, the store file
    is changed (no service may hold it)."""
    from lmrec.store.keys import KeyStore

    with friendly_errors():
        if url:
            _api(url, key, "DELETE", f"/v1/admin/keys/{key_id}")
        else:
            with _open_store(store) as st:
                if not KeyStore(st).revoke(key_id):
                    raise ValueError(f"no active key with id {key_id!r}")
        console.print(f"revoked {key_id}")


def audit(
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Only this key's calls.")] = None,
    route: Annotated[str | None, typer.Option(help="Only routes containing this text.")] = None,
    target: Annotated[str | None, typer.Option(help="Only calls on this user, item, version or key.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest entries shown.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The audit log of writes and admin calls, newest first (time, key id, route, target, status, count)."""
    from lmrec.store.audit import AuditLog

    with friendly_errors():
        if url:
            params = {k: v for k, v in {"key_id": key_id, "route": route, "target": target,
                                        "limit": limit}.items() if v is not None}
            rows = _api(url, key, "GET", "/v1/admin/audit", params=params)
        else:
            with _open_store(store) as st:
                rows = AuditLog(st).query(key_id=key_id, route=route, target=target, limit=limit)
                rows = [{**r, "logged_at": r["logged_at"].isoformat()} for r in rows]
        if as_json:
            for r in rows:
                console.print_json(json.dumps(r))
            return
        table = Table("time", "key", "method", "route", "target", "status", "count")
        for r in rows:
            table.add_row(str(r["logged_at"])[:23], r["key_id"] or "-", r["method"], r["route"],
                          str(r["target"] or "")[:40], str(r["status"]),
                          "" if r["count"] is None else str(r["count"]))
        console.print(table)


def _download(url: str, key: str | None, path: str, out: Path) -> dict[str, Any]:
    """Stream a backup archive from the running service into the new folder ``out``; returns its manifest."""
    import tarfile

    import httpx

    from lmrec.store.backup import unpack

    headers = {"X-API-Key": key} if key else {}
    try:
        with httpx.stream("GET", url.rstrip("/") + path, headers=headers,
                          timeout=httpx.Timeout(60, read=600)) as r:
            if r.status_code >= 400:
                r.read()
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = r.text[:200]
                raise RuntimeError(f"the service answered {r.status_code}: {detail}")
            return unpack(r.iter_bytes(), out)
    except (httpx.HTTPError, tarfile.TarError) as exc:
        raise RuntimeError(f"cannot download the backup from {url} (nothing was written to {out}): "
                           f"{exc}") from None


def backup(
    out: Annotated[Path, typer.Argument(help="A new (or empty) folder for the backup, on this machine.")],
    store: StoreOpt = DEFAULT_STORE, url: UrlOpt = None, key: AdminKeyOpt = None,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir",
        help="The model registry to copy (without --url; the service copies its own).")] = None,
) -> None:
    """Back up the store and model registry consistently, while the service keeps serving.

    Events, items, users, API keys, erasure tombstones and the audit log, with row counts and content hashes.
    The backup lands in OUT, where this command runs. With --url the running service writes it under its
    backup folder (LMREC_BACKUP_DIR/NAME, NAME being OUT's last part, which must be new there; the service
    keeps that copy) and this command downloads it into OUT and checks it against its manifest.
    """
    import re

    from lmrec.serving.schemas import BACKUP_NAME_PATTERN
    from lmrec.store.backup import backup as run

    with friendly_errors():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"{out} exists and is not empty; choose a new folder for the backup")
        if url:
            if not re.fullmatch(BACKUP_NAME_PATTERN, out.name):
                raise ValueError(f"with --url, OUT's last part {out.name!r} names the backup on the service: "
                                 "use letters, digits, '.', '_' and '-' (at most 128, not starting with '.')")
            made = _api(url, key, "POST", "/v1/admin/backup", json={"name": out.name})
            manifest = _download(url, key, f"/v1/admin/backups/{out.name}", out)
            if manifest["tables"] != made["tables"]:
                raise ValueError(f"the downloaded backup in {out} is not the one the service wrote")
        else:
            with _open_store(store) as st:
                manifest = run(st, out, models_dir)
        for t, fp in manifest["tables"].items():
            console.print(f"{t}: {fp['rows']:,} rows")
        console.print(f"models: {', '.join(manifest['models']) or 'none'}")
        console.print(f"[green]backup written to {out}[/]" + (
            f" (checked against its manifest; the service keeps a copy at {made['path']})" if url else ""))


def restore(
    backup_dir: Annotated[Path, typer.Argument(help="A folder written by `lmrec backup`.")],
    store: StoreOpt = DEFAULT_STORE,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Where to put the backed-up model versions.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing store file / model versions.")] = False,
) -> None:
    """Rebuild a store (and model registry) from a backup, checked against its row counts and hashes.

    The new store file is moved into place only once every table matches the backup's manifest.
    """
    from lmrec.store.backup import restore as run

    with friendly_errors():
        manifest = run(backup_dir, store, models_dir, force=force)
        for t, fp in manifest["tables"].items():
            console.print(f"{t}: {fp['rows']:,} rows (hash checked)")
        console.print(f"[green]restored {store}[/]" + (f" and {len(manifest['models'])} model version(s) in "
                                                       f"{models_dir}" if models_dir else ""))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.command("audit")(audit)
    app.command("backup")(backup)
    app.command("restore")(restore)
