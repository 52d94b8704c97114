"""``lmrec embed items|users|finetune|spaces`` and ``lmrec similar ITEM``: text vectors, from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from lmrec.cli.common import (
    BUILTIN_DEFAULT,
    DataChoice,
    DataOpt,
    DataStoreOpt,
    NprocOpt,
    SourceAlias,
    choose_data,
    console,
    friendly_errors,
    relaunch_under_torchrun,
    say_data,
)

embed_app = typer.Typer(help="Encode item and user text with a language model (cached), and fine-tune it.",
                        no_args_is_help=True)

ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Hugging Face model name or local folder; default all-MiniLM-L6-v2 (shipped, offline).")]
TemplateOpt = Annotated[str | None, typer.Option(
    "--template", help="Item fields in order, field[:Label] comma-separated: 'title, categories:Genres'.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Cut each item text to this many tokens.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache", help="Embedding cache file (default: the store the data comes from, else embeddings.duckdb in "
    "lmrec's cache directory).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps...")]
DownloadOpt = Annotated[bool, typer.Option("--allow-download", help="Let a named model be downloaded.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Cache precision: float32 or float16.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Also write the vectors by index to a .npy file (with a .json file naming the rows).")]


def _dataset(data: str | None, store: str | None, source: str | None) -> tuple[Any, Path | None]:
    """The dataset to read (--data, --store, the store here, else MovieLens-100K), said on the console, and
    the store to cache vectors in: the data's store when this process can write it (not while a service holds
    it, when the data is read from a snapshot and vectors go to the default cache)."""
    choice: DataChoice = choose_data(data, store, source)
    spec = choice.spec or BUILTIN_DEFAULT
    say_data(spec, choice)
    from lmrec.store import is_store_file, open_read

    if is_store_file(spec):
        with open_read(spec) as st:
            ds = st.to_dataset()
            held = st.snapshot_of is not None
        if held:
            console.print(f"[yellow]{spec} is held by a running service: read from a snapshot; vectors are "
                          "cached in the default cache[/]")
            return ds, None
        return ds, Path(spec)
    from lmrec.experiment import load_data

    return load_data(spec), None


def _encoder(model: str | None, batch_size: int, device: str, allow_download: bool) -> Any:
    from lmrec.text import get_encoder

    return get_encoder(model, batch_size=batch_size, device=device, allow_download=allow_download)


def _save(out: Path, vectors: np.ndarray, ids: list[str], meta: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors, allow_pickle=False)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": ["<pad>", *ids]}, ensure_ascii=False))
    console.print(f"wrote {out} {vectors.shape} and {out.with_suffix('.json').name}")


@embed_app.command("items")
def items(model: ModelOpt = None, template: TemplateOpt = None, max_tokens: MaxTokensOpt = 128,
          data: DataOpt = None, store: DataStoreOpt = None, source: SourceAlias = None,
          cache: CacheOpt = None,
          batch_size: BatchOpt = 64, device: DeviceOpt = "auto", dtype: DtypeOpt = "float32",
          allow_download: DownloadOpt = False,
          out: OutOpt = None, nproc: NprocOpt = 1) -> None:
    """Encode every item's text (cached: only new or changed texts are encoded).

    With `--nproc N` (or under torchrun) each process encodes its share of the items into the cache, then one
    process assembles every vector from it: the same vectors as one process.

    Reads the store (lmrec.duckdb here, or --store) unless --data names other data; MovieLens-100K when there
    is neither. Examples: `lmrec embed items`, `lmrec embed items --model BAAI/bge-small-en-v1.5 --template
    'title, categories:Genres, description:About'`, `lmrec embed items --store shop.duckdb --out items.npy`.
    """
    from lmrec.models.export import shard_range
    from lmrec.text import ItemTemplate, embed_dataset_items, embed_items
    from lmrec.training.distributed import barrier, cleanup, init_distributed, launched_by_torchrun

    if nproc > 1 and not launched_by_torchrun():
        relaunch_under_torchrun(nproc, "embed")
        return
    ctx = init_distributed("cpu")
    if not ctx.is_main:
        console.quiet = True
    with friendly_errors():
        ds, own = _dataset(data, store, source)
        enc = _encoder(model, batch_size, device, allow_download)
        tpl = ItemTemplate.parse(template, max_tokens=max_tokens)
        console.print(f"{ds.n_items:,} items of {ds.name}, encoder {enc.name} (revision {enc.revision}), "
                      f"template [cyan]{tpl}[/] ≤ {max_tokens} tokens")
        target = cache or own
        if ctx.enabled:
            # Each process encodes its contiguous share into the cache (opened only around each lookup and
            # write, so the processes take turns on the file); then the first assembles every vector from it.
            lo, hi = shard_range(ds.items.height, ctx.rank, ctx.world_size)
            shard = ds.items.sort("item_idx").slice(lo, hi - lo)
            _, part = embed_items(shard, encoder=enc, template=tpl, store=target, progress=False,
                                  dtype=dtype)  # type: ignore[arg-type]
            barrier(ctx)
            cleanup(ctx)
            if not ctx.is_main:
                return
            console.print(f"{ctx.world_size} processes encoded their shares (the first: {part})")
        vecs, stats = embed_dataset_items(ds, encoder=enc, template=tpl, store=target, progress=True,
                                          dtype=dtype)  # type: ignore[arg-type]
        console.print(str(stats))
        if out is not None:
            _save(out, vecs, ds.item_map.raw_ids, {"kind": "items", "encoder": enc.name,
                                                    "revision": enc.revision, "template": tpl.canonical()})


@embed_app.command("users")
def users(model: ModelOpt = None, text: Annotated[str, typer.Option(
              "--text", help="profile (attributes), history (last titles, newest first) or both.")] = "both",
          last_n: Annotated[int, typer.Option("--last-n", help="Titles in a history text.")] = 10,
          data: DataOpt = None, store: DataStoreOpt = None, source: SourceAlias = None,
          cache: CacheOpt = None,
          batch_size: BatchOpt = 64, device: DeviceOpt = "auto", allow_download: DownloadOpt = False,
          out: OutOpt = None) -> None:
    """Encode every user's text on the query side: profile, history of titles, or both joined."""
    from lmrec.text import encode_cached, history_texts, profile_text

    with friendly_errors():
        if text not in ("profile", "history", "both"):
            raise ValueError(f"--text must be profile, history or both, not {text!r}")
        ds, own = _dataset(data, store, source)
        enc = _encoder(model, batch_size, device, allow_download)
        users_tbl = ds.users.sort("user_idx")
        profiles = [profile_text(a, p) for a, p in zip(users_tbl["attributes"].to_list(),
                                                       users_tbl["profile"].to_list(), strict=True)]
        hist = history_texts(ds.sequences, ds.item_titles(), last_n=last_n, prefix="Recently: ")[1:]
        texts = {"profile": profiles, "history": hist,
                 "both": [". ".join(t for t in pair if t) for pair in zip(profiles, hist, strict=True)]}[text]
        kind = f"user-{text}:last{last_n}"
        example = texts[0][:120].replace("[", r"\[")
        console.print(f"{len(texts):,} users of {ds.name}, encoder {enc.name}; e.g. [cyan]{example}[/]")
        vecs, stats = encode_cached(texts, encoder=enc, store=cache or own, template=kind, side="query",
                                    progress=True, description="users")
        console.print(str(stats))
        if out is not None:
            full = np.zeros((ds.user_map.size, vecs.shape[1]), dtype=np.float32)
            full[users_tbl["user_idx"].to_numpy()] = vecs
            _save(out, full, ds.user_map.raw_ids,
                  {"kind": kind, "encoder": enc.name, "revision": enc.revision})


@embed_app.command("finetune")
def finetune(out: Annotated[Path, typer.Option("--out", help="Folder for the fine-tuned model.")],
             base: ModelOpt = None, data: DataOpt = None, store: DataStoreOpt = None,
             source: SourceAlias = None,
             method: Annotated[str | None, typer.Option(
                 "--method", help="'contrastive': text pairs with in-batch negatives (any sentence "
                 "encoder); 'recommender': a static (Model2Vec) model's token vectors trained end to end "
                 "through the text-only recommender, full softmax over the catalogue. Default: recommender "
                 "for a static model, contrastive otherwise.")] = None,
             pairs: Annotated[int, typer.Option(
                 "--pairs", help="contrastive: training pairs to sample.")] = 4000,
             pairs_from: Annotated[str, typer.Option(
                 "--pairs-from", help="contrastive: the query of a pair: 'item' (the previous item's text) "
                 "or 'history' (the last 5 titles), the positive being the next item's text; or 'neighbours' "
                 "(an item's text and one of its most co-occurring items' text).")] = "history",
             steps: Annotated[int | None, typer.Option(
                 "--steps", help="contrastive: stop after this many optimiser steps (default: one pass over "
                 "the pairs).")] = None,
             epochs: Annotated[int | None, typer.Option(
                 "--epochs", help="Passes (contrastive: 1; recommender: at most 40, chosen on each user's "
                 "last training event).")] = None,
             batch_size: Annotated[int | None, typer.Option(
                 "--batch-size", help="Pairs (contrastive: 64) or next events (recommender: 256) per batch.")
             ] = None,
             max_length: Annotated[int, typer.Option("--max-length",
                                                     help="contrastive: tokens per text.")] = 64,
             lr: Annotated[float | None, typer.Option(
                 "--lr", help="contrastive: 5e-5; recommender: 0.03 (in units of the token vectors' size).")
             ] = None,
             check: Annotated[bool, typer.Option(
                 "--check/--no-check", help="Score the validation users with the text recommender before and "
                 "after (the held-out check).")] = True,
             seed: Annotated[int, typer.Option("--seed")] = 0, device: DeviceOpt = "auto") -> None:
    """Fine-tune the encoder on behaviour from the training part of a leave-one-out split: contrastively on
    (query → next item) or (item → co-occurring item) text pairs, or, for a static model, end to end through
    the text-only recommender.

    The validation and test events are never trained on; the held-out check reports the validation NDCG@10
    of the text-only recommender with the base and the fine-tuned model. The new model gets its own
    revision, so cached vectors of the base model are kept apart. Use it with `--model FOLDER` in the other
    `lmrec embed` commands and `lmrec train --encoder FOLDER`.
    """
    from lmrec.data.splits import leave_one_out
    from lmrec.text.encoders import StaticEncoder, get_encoder

    with friendly_errors():
        if method not in (None, "contrastive", "recommender"):
            raise typer.BadParameter(f"--method must be contrastive or recommender, not {method!r}")
        static = isinstance(get_encoder(base), StaticEncoder)
        method = method or ("recommender" if static else "contrastive")
        if method == "recommender" and not static:
            raise typer.BadParameter(
                "--method recommender needs a static (Model2Vec) model, such as tokenlearn-static-model; "
                f"{base or 'the default MiniLM'} is a transformer (use --method contrastive)")
        ds, _ = _dataset(data, store, source)
        split = leave_one_out(ds)
        if method == "recommender":
            _finetune_static(split, out, base, epochs, batch_size, lr, check, seed, device, store)
            return
        from lmrec.text.finetune import FinetuneConfig, finetune_encoder

        cfg = FinetuneConfig(max_pairs=pairs, pairs=pairs_from, max_steps=steps, epochs=epochs or 1,
                             batch_size=batch_size or 64, max_length=max_length, learning_rate=lr or 5e-5,
                             seed=seed)
        what = "item → co-occurring item" if pairs_from == "neighbours" else f"{pairs_from} → next item"
        console.print(f"fine-tuning on {split.describe()} ({what} pairs)")
        res = finetune_encoder(split, out, base=base, config=cfg, device=device, progress=True, check=check,
                               store=store)
        loss = f"{res.train_loss:.3f}" if res.train_loss is not None else "n/a"
        console.print(f"wrote {res.path}: encoder [bold]{res.name}[/] revision {res.revision}, "
                      f"{res.n_pairs:,} pairs, training loss {loss}, {res.seconds:.0f}s")
        _print_check(res.validation)


def _finetune_static(split: Any, out: Path, base: str | None, epochs: int | None, batch_size: int | None,
                     lr: float | None, check: bool, seed: int, device: str, store: Any) -> None:
    """``lmrec embed finetune --method recommender``: one line per epoch, then the result."""
    from lmrec.text.static_finetune import StaticFinetuneConfig, finetune_static_encoder

    given = {"epochs": epochs, "batch_size": batch_size, "learning_rate": lr}
    cfg = StaticFinetuneConfig(seed=seed, **{k: v for k, v in given.items() if v is not None})
    console.print(f"fine-tuning through the text recommender on {split.describe()}: epochs chosen on each "
                  "user's last training event, then trained again on every training event")

    def epoch_line(r: dict[str, float]) -> None:
        held = f", held-back NDCG@10 {r['held_back_ndcg@10']:.4f}" if "held_back_ndcg@10" in r else ""
        console.print(f"epoch {int(r['epoch'])}: loss {r['loss']:.4f}{held}")

    res = finetune_static_encoder(split, out, base=base or "tokenlearn-static-model", config=cfg,
                                  device=device, on_epoch=epoch_line, check=check, store=store)
    console.print(f"wrote {res.path}: encoder [bold]{res.name}[/] revision {res.revision}, "
                  f"{res.n_events:,} training events, {res.epochs} epochs, {res.seconds:.0f}s")
    _print_check(res.validation)


def _print_check(v: dict[str, float] | None) -> None:
    if v is None:
        return
    verdict = "better" if v["fine-tuned"] > v["base"] else "[red]not better[/]"
    console.print(f"held-out check, validation NDCG@10 of the text recommender "
                  f"({int(v['users']):,} users): base {v['base']:.4f} → fine-tuned "
                  f"{v['fine-tuned']:.4f} ({verdict})")


@embed_app.command("spaces")
def spaces(cache: CacheOpt = None) -> None:
    """List what the embedding cache holds: one row per (encoder, revision, template, settings, dtype)."""
    from lmrec.store.embeddings import EmbeddingTable, open_store
    from lmrec.text import default_cache_path

    with friendly_errors():
        with open_store(cache or default_cache_path()) as st:
            df = EmbeddingTable(st).spaces()
        t = Table("encoder", "revision", "template", "dtype", "dim", "vectors")
        for r in df.iter_rows(named=True):
            t.add_row(r["encoder"], r["revision"], r["template"][:60], r["dtype"], str(r["dim"]),
                      f"{r['n_vectors']:,}")
        console.print(t)


@embed_app.command("export")
def export(out: Annotated[Path, typer.Argument(help="A .parquet or .npy file to write.")],
           model: ModelOpt = None, template: TemplateOpt = None, max_tokens: MaxTokensOpt = 128,
           cache: CacheOpt = None, dtype: DtypeOpt = "float32") -> None:
    """Export the cached item vectors of one encoder and template (text hash → vector), to move a cache
    to another machine without encoding again; read it back with `lmrec embed import`."""
    from lmrec.store.embeddings import EmbeddingSpace, EmbeddingTable, open_store
    from lmrec.text import ItemTemplate, default_cache_path, get_encoder, item_vectors_key

    with friendly_errors():
        key = item_vectors_key(encoder=get_encoder(model), template=ItemTemplate.parse(template, max_tokens),
                               dtype=dtype)  # type: ignore[arg-type]
        space = EmbeddingSpace(key["encoder"], key["revision"], key["template"], key["settings"],
                               key["dtype"])  # type: ignore[arg-type]
        with open_store(cache or default_cache_path()) as st:
            table = EmbeddingTable(st)
            path = table.export(space, out)
            n = table.count(space)
        console.print(f"wrote {n:,} vectors of {space.encoder} (revision {space.revision}) to {path}")


@embed_app.command("import")
def import_(path: Annotated[Path, typer.Argument(help="A file written by `lmrec embed export`.")],
            cache: CacheOpt = None) -> None:
    """Import exported vectors into the cache (vectors already there are kept; dimensions are checked)."""
    from lmrec.store.embeddings import EmbeddingTable, open_store
    from lmrec.text import default_cache_path

    with friendly_errors():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        with open_store(cache or default_cache_path()) as st:
            space, n = EmbeddingTable(st).import_(path)
        console.print(f"imported {n:,} new vectors of {space.encoder} (revision {space.revision})")


def similar(item: Annotated[str, typer.Argument(help="An item id (or, if no id matches, part of a title).")],
            k: Annotated[int, typer.Option("--k", help="How many neighbours.")] = 10, model: ModelOpt = None,
            template: TemplateOpt = None, max_tokens: MaxTokensOpt = 128, data: DataOpt = None,
            store: DataStoreOpt = None, source: SourceAlias = None, cache: CacheOpt = None,
            device: DeviceOpt = "auto", allow_download: DownloadOpt = False) -> None:
    """Print the items whose text is nearest to ITEM's (cosine similarity of cached text vectors).

    Reads the store (lmrec.duckdb here, or --store) unless --data names other data; MovieLens-100K when there
    is neither. Works while `lmrec serve` holds the store (it reads a snapshot).
    """
    from lmrec.text import ItemTemplate, item_vectors

    with friendly_errors():
        ds, own = _dataset(data, store, source)
        idx = _find_item(ds, item)
        enc = _encoder(model, 64, device, allow_download)
        vecs = item_vectors(ds, encoder=enc, template=ItemTemplate.parse(template, max_tokens=max_tokens),
                            store=cache or own)
        ids, scores = nearest(vecs, idx, k)
        titles = ds.item_titles()
        t = Table(title=f"nearest to {ds.item_map.raw(idx)}: {titles[idx]} ({enc.name})")
        t.add_column("#", justify="right")
        t.add_column("item")
        t.add_column("title")
        t.add_column("score", justify="right")
        for rank, (i, s) in enumerate(zip(ids, scores, strict=True), 1):
            t.add_row(str(rank), ds.item_map.raw(int(i)), titles[int(i)], f"{s:.3f}")
        console.print(t)


def _find_item(ds: Any, item: str) -> int:
    if item in ds.item_map:
        return int(ds.item_map.index(item))
    titles = ds.item_titles()
    low = item.lower()
    matches = [i for i, t in enumerate(titles) if i and low in t.lower()]
    if not matches:
        raise ValueError(f"no item has id {item!r} or a title containing it")
    return matches[0]


def nearest(vecs: np.ndarray, idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the highest cosine similarity to item ``idx`` (itself and padding excluded)."""
    norms = np.linalg.norm(vecs, axis=1)
    norms[norms == 0] = 1.0
    scores = (vecs @ vecs[idx]) / (norms * norms[idx])
    scores[[0, idx]] = -np.inf
    k = min(k, len(scores) - 2)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return top, scores[top]


def register(app: typer.Typer) -> None:
    app.add_typer(embed_app, name="embed")
    app.command("similar")(similar)
