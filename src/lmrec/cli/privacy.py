"""``lmrec privacy erase|compact|forget|rotate-pseudonyms|pseudonym|status``: erasure that leaves no byte
behind, pseudonymous ids and what each saved model still knows (docs/privacy.md). ``lmrec data erase`` is the
same as ``lmrec privacy erase``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmrec.cli.common import DEFAULT_STORE, StoreOpt, console, friendly_errors
from lmrec.cli.serving import AdminKeyOpt, UrlOpt, _api, _open_store

privacy_app = typer.Typer(
    help="Erase users for good, check what saved models still know, and manage pseudonymous ids "
    "(docs/privacy.md).",
    no_args_is_help=True,
)

ModelsDirOpt = Annotated[Path | None, typer.Option(
    "--models-dir", envvar="LMREC_MODELS_DIR",
    help="The model registry (one folder per model version); every folder in it is patched too.")]


def erase(
    users: Annotated[list[str], typer.Argument(help="Raw user ids to erase.")],
    store: StoreOpt = DEFAULT_STORE,
    models_dir: ModelsDirOpt = None,
    compact: Annotated[bool, typer.Option(
        help="Rewrite the store file afterwards so that no byte of the erased rows is left.")] = True,
    url: UrlOpt = None, key: AdminKeyOpt = None,
) -> None:
    """Erase users: their events and profile leave the store (compacted: no byte left in the file), their ids
    and histories leave every saved model folder, and a keyed tombstone stops any older model from serving
    them. With --url the running service does it (DELETE /v1/users/{id})."""
    with friendly_errors():
        if url:
            import urllib.parse

            for u in users:
                out = _api(url, key, "DELETE", f"/v1/users/{urllib.parse.quote(u, safe='')}")
                console.print(f"erased a user: {out['events_deleted']} events, profile "
                              f"{'deleted' if out['profile_deleted'] else 'absent'}")
            return
        from lmrec.models.erasure import forget_in_folder, model_folders
        from lmrec.privacy import user_key
        from lmrec.store.keys import KeyStore

        keyed = [user_key(u) for u in users]
        with _open_store(store) as st:
            keys = KeyStore(st)
            for u in keyed:
                removed = keys.erase_user(u)
                console.print(f"erased a user: {removed['events']} events, profile "
                              f"{'deleted' if removed['users'] else 'absent'}")
            if compact:
                sizes = st.compact()
                console.print(f"compacted {store}: {sizes['bytes_before']:,} → "
                              f"{sizes['bytes_after']:,} bytes")
        n = sum(bool(forget_in_folder(f, keyed)) for f in (model_folders(models_dir) if models_dir else []))
        if models_dir:
            console.print(f"{n} model folder(s) in {models_dir} knew them and were patched; "
                          "`lmrec privacy forget --retrain` retrains them without the erased events")


@privacy_app.command("compact")
def compact_(store: StoreOpt = DEFAULT_STORE) -> None:
    """Rewrite the store file so that deleted rows leave no bytes behind (the service does this after each
    erasure unless LMREC_ERASURE_COMPACTION=false)."""
    with friendly_errors(), _open_store(store) as st:
        sizes = st.compact()
        console.print(f"compacted {store}: {sizes['bytes_before']:,} → {sizes['bytes_after']:,} bytes")


@privacy_app.command("forget")
def forget(
    folders: Annotated[list[Path] | None, typer.Argument(help="Model folders (default: every one in "
                                                                "--models-dir).")] = None,
    models_dir: ModelsDirOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    retrain: Annotated[bool, typer.Option(
        help="Also retrain each folder that was trained on erased users' events, with its own settings, on "
             "every event now in the store (what it learned from them goes too).")] = False,
) -> None:
    """Drop every erased user (tombstone in the store) from saved models, and optionally retrain them."""
    with friendly_errors():
        from lmrec.models.erasure import erased_in_folder, model_folders, privacy_record, retrain_folder

        paths = list(folders or []) or (model_folders(models_dir) if models_dir else [])
        if not paths:
            raise ValueError("give model folders or --models-dir")
        with _open_store(store) as st:
            from lmrec.store.keys import KeyStore

            keys = KeyStore(st)
            for path in paths:
                n = erased_in_folder(path, keys.is_erased)
                line = f"{path}: {n} erased user(s) dropped"
                if retrain and privacy_record(path).get("retrain_needed"):
                    seconds = retrain_folder(path, st.to_dataset())
                    line += f"; retrained on the store's {st.counts()['events']:,} events in {seconds:.1f}s"
                console.print(line)


@privacy_app.command("status")
def status(models_dir: ModelsDirOpt = None, store: StoreOpt = DEFAULT_STORE) -> None:
    """Which privacy options are on, and which saved models still carry what erased users taught them."""
    with friendly_errors():
        import os

        from lmrec.models.erasure import model_folders, privacy_record
        from lmrec.privacy import SECRET_ENV, SECRET_FILE_ENV, default_secret_path, pseudonymiser, store_key

        secret = (f"${SECRET_ENV}" if os.environ.get(SECRET_ENV) else
                  os.environ.get(SECRET_FILE_ENV) or f"{default_secret_path()} (created on first use)")
        console.print(f"erasure secret: {secret}")
        p = pseudonymiser()
        console.print(f"pseudonymous user ids: {'on, ' + str(len(p.keys)) + ' key(s)' if p else 'off'}")
        console.print(f"store encryption: {'on' if store_key() else 'off'} ({store})")
        if models_dir:
            t = Table("model folder", "erased users trained on", "retrain needed")
            for f in model_folders(models_dir):
                rec = privacy_record(f)
                t.add_row(f.name, str(rec.get("erased_users_trained_on", 0)),
                          "yes" if rec.get("retrain_needed") else "no")
            console.print(t)


@privacy_app.command("pseudonym")
def pseudonym(users: Annotated[list[str], typer.Argument(help="Raw user ids.")]) -> None:
    """Print the id lmrec stores for each raw user id (its pseudonym when pseudonyms are on), to join exports
    with your own ids."""
    with friendly_errors():
        from lmrec.privacy import user_key

        for u in users:
            console.print(f"{u}\t{user_key(u)}", markup=False, highlight=False)


@privacy_app.command("rotate-pseudonyms")
def rotate(
    new_secret_file: Annotated[Path, typer.Option(
        "--new-secret-file", help="A file holding the new key (one line). It is appended to the pseudonym "
                                  "secret file when the store and models are re-keyed.")],
    store: StoreOpt = DEFAULT_STORE,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Re-key every stored pseudonym with a new key, without ever seeing a raw id: each stored pseudonym p
    becomes HMAC(new key, p), in the store and in every model folder; then the new key is appended to
    $LMREC_PSEUDONYM_SECRET_FILE (the chain of keys keeps mapping raw ids to the new pseudonyms)."""
    with friendly_errors():
        import os

        from lmrec.models.erasure import model_folders, rekey_folder
        from lmrec.privacy import PSEUDONYM_FILE_ENV, pseudonymiser, rotation_marker

        p = pseudonymiser()
        file = os.environ.get(PSEUDONYM_FILE_ENV)
        if p is None or not file:
            raise ValueError(f"pseudonyms are not on from a file: set {PSEUDONYM_FILE_ENV} (a key rotation "
                             "appends the new key to that file)")
        lines = new_secret_file.read_text().strip().splitlines() if new_secret_file.exists() else []
        new_key = lines[0].strip() if lines else ""
        if not new_key:
            raise ValueError(f"{new_secret_file} holds no key")
        if new_key in p.keys:
            raise ValueError(f"{new_secret_file} holds a key already in {file}")
        marker = rotation_marker(new_key)
        with _open_store(store) as st:
            n = st.rekey_users(lambda old: p.rotate(old, new_key), marker)
        folders = model_folders(models_dir) if models_dir else []
        for f in folders:
            rekey_folder(f, lambda old: p.rotate(old, new_key), marker)
        with open(file, "a") as fh:  # last: a rotation interrupted before this line can simply be run again
            fh.write(new_key + "\n")
        console.print(f"re-keyed {n:,} users in {store} and {len(folders)} model folder(s); the new key is "
                      f"now the last line of {file}")


def register(app: typer.Typer) -> None:
    from lmrec.cli.data import data_app

    privacy_app.command("erase")(erase)
    data_app.command("erase")(erase)
    app.add_typer(privacy_app, name="privacy")
