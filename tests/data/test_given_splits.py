"""Data that carries its split (the ``given`` protocol), and RecBole prefix rows rebuilt into one sequence per
user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.cleaning import CleaningConfig, DataError
from lmrec.data.dataset import Dataset
from lmrec.data.loaders import detect_format, load_dataset, open_source
from lmrec.data.split_io import write_split
from lmrec.data.splits import Split, given, leave_one_out, make_split

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def per_user(split: Split, ds: Dataset) -> dict[str, dict[str, object]]:
    """Raw ids per user: training sequence, and for validation and test the history and the targets."""
    out: dict[str, dict[str, object]] = {}
    train = split.train
    for u in range(1, ds.user_map.size):
        seq = ds.item_map.raws(train.sequences[u]).tolist()
        if seq:
            out.setdefault(ds.user_map.raws([u])[0], {})["train"] = seq
    for name, es in (("valid", split.valid), ("test", split.test)):
        for u, hist, targets in zip(es.users, es.history, es.targets, strict=True):
            entry = out.setdefault(ds.user_map.raws([int(u)])[0], {})
            entry[name] = (ds.item_map.raws(hist).tolist(), sorted(ds.item_map.raws(targets).tolist()))
    return out


def prefix_rows(sequences: dict[str, list[str]], max_len: int) -> tuple[str, str, str]:
    """RecBole's sequential benchmark files for ``sequences``: one row per target, its history cut at the last
    ``max_len`` items; each user's last item is the test row, the one before the validation row."""
    parts = {"train": [], "valid": [], "test": []}
    for user, seq in sequences.items():
        for k in range(1, len(seq)):
            part = "test" if k == len(seq) - 1 else "valid" if k == len(seq) - 2 else "train"
            parts[part].append(f"{user}\t{' '.join(seq[max(0, k - max_len):k])}\t{seq[k]}\n")
    return tuple(HEADER + "".join(rows) for rows in parts.values())  # type: ignore[return-value]


SEQUENCES = {
    "u1": [f"i{k}" for k in range(1, 13)],  # longer than the window: histories are cut
    "u2": ["i3", "i5", "i3", "i7", "i9"],  # a repeated item
    "u3": ["i2", "i4", "i6"],
}


def write_recbole_split(folder: Path, sequences: dict[str, list[str]], max_len: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, text in zip(("train", "valid", "test"), prefix_rows(sequences, max_len), strict=True):
        (folder / f"toy.{part}.inter").write_text(text)
    return folder


# ---------------------------------------------------------------------- RecBole prefix rows
def test_prefix_rows_of_a_split_are_rebuilt_exactly_and_load_as_given(tmp_path):
    folder = write_recbole_split(tmp_path / "toy", SEQUENCES, max_len=3)
    assert detect_format(folder) == "recbole"
    ds, report = load_dataset(folder)
    for user, seq in SEQUENCES.items():
        assert ds.user_sequence(user) == seq  # one sequence, not the concatenation of the windows
    assert ds.n_events == sum(len(s) for s in SEQUENCES.values()) == report.rows_kept
    assert ds.has_split and ds.name == "toy"
    got = per_user(make_split(ds, "given"), ds)
    for user, seq in SEQUENCES.items():
        assert got[user]["train"] == seq[:-2]
        assert got[user]["valid"] == (seq[:-2], [seq[-2]])
        assert got[user]["test"] == (seq[:-1], [seq[-1]])
    # The same data cut by lmrec's leave-one-out: the same split (the column is ignored by other protocols).
    assert per_user(leave_one_out(ds), ds) == got


def test_the_test_file_alone_keeps_its_window_and_the_folder_restores_the_oldest_events(tmp_path):
    folder = write_recbole_split(tmp_path / "toy", SEQUENCES, max_len=3)
    alone, report = load_dataset(folder / "toy.test.inter")
    assert alone.user_sequence("u1") == SEQUENCES["u1"][-4:]  # all the test row shows
    assert any("one part of a given split" in n for n in report.notes)
    assert not alone.has_split
    whole, _ = load_dataset(folder)
    assert whole.user_sequence("u1") == SEQUENCES["u1"]


def test_full_history_rows_reveal_events_no_earlier_row_showed(tmp_path):
    f = tmp_path / "x.inter"
    # u's first row already has a history; a later row shows two events before everything known so far.
    f.write_text(HEADER + "u\ta b\tc\nu\ta b c\td\nu\tx y a b c d\te\nv\t\tp\nv\tp\tq\n")
    ds, _ = load_dataset(f)
    assert ds.user_sequence("u") == ["x", "y", "a", "b", "c", "d", "e"]
    assert ds.user_sequence("v") == ["p", "q"]


def test_a_row_contradicting_its_users_sequence_names_file_and_row(tmp_path):
    f = tmp_path / "bad.inter"
    f.write_text(HEADER + "u\ta\tb\nv\tp\tq\nu\ta b\tc\nu\ta c\td\n")
    expected = r"bad\.inter.*row 4.*item_id_list.*contradicts.*last 2 item\(s\) \(b c\).*got 'a c'"
    with pytest.raises(DataError, match=expected):
        load_dataset(f)
    g = tmp_path / "longer.inter"  # a longer history that does not end with the known sequence
    g.write_text(HEADER + "u\ta\tb\nu\tz a c\td\n")
    with pytest.raises(DataError, match=r"longer\.inter.*row 2.*contradicts"):
        load_dataset(g)
    folder = write_recbole_split(tmp_path / "split", SEQUENCES, max_len=3)
    test = folder / "toy.test.inter"
    test.write_text(test.read_text().replace("i9 i10 i11\ti12", "i9 i99 i11\ti12"))
    with pytest.raises(DataError, match=r"toy\.test\.inter.*row 1.*contradicts"):
        load_dataset(folder)


def test_prefix_rows_with_timestamps_keep_them(tmp_path):
    f = tmp_path / "t.inter"
    f.write_text("user_id:token\titem_id_list:token_seq\ttimestamp_list:float_seq\titem_id:token\t"
                 "timestamp:float\n"
                 "u\ta\t100\tb\t200\nu\ta b\t100 200\tc\t300\nu\tb c\t200 300\td\t400\n")
    ds, _ = load_dataset(f)
    assert ds.user_sequence("u") == ["a", "b", "c", "d"]
    assert ds.events["timestamp"].to_list() == [100, 200, 300, 400]
    g = tmp_path / "bad.inter"
    g.write_text("user_id:token\titem_id_list:token_seq\ttimestamp_list:float_seq\titem_id:token\t"
                 "timestamp:float\nu\ta b\t100\tc\t300\n")
    with pytest.raises(DataError, match=r"bad\.inter.*row 1.*timestamp_list"):
        load_dataset(g)


def test_plain_recbole_split_files_carry_their_part(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (d / "ml.train.inter").write_text(head + "1\t10\t3\t100\n1\t11\t4\t200\n2\t10\t5\t100\n")
    (d / "ml.valid.inter").write_text(head + "1\t12\t3\t300\n")
    (d / "ml.test.inter").write_text(head + "1\t13\t3\t400\n2\t12\t1\t300\n")
    (d / "ml.item").write_text("item_id:token\ttitle:token_seq\n10\tA\n11\tB\n12\tC\n13\tD\n")
    ds, _ = load_dataset(d)
    assert ds.has_split and ds.event_types == ("rating",)
    assert ds.item_titles()[1:] == ["A", "B", "C", "D"]  # X.item beside X.train.inter
    got = per_user(given(ds), ds)
    assert got["1"] == {"train": ["10", "11"], "valid": (["10", "11"], ["12"]),
                        "test": (["10", "11", "12"], ["13"])}
    assert got["2"] == {"train": ["10"], "test": (["10"], ["12"])}


def test_a_folder_of_unrelated_inter_files_is_still_an_error(tmp_path):
    (tmp_path / "a.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    (tmp_path / "b.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(FileNotFoundError, match="several .inter files"):
        open_source(tmp_path, "recbole")


# ---------------------------------------------------------------------- split columns and stated protocols
def test_a_table_with_a_split_column_loads_as_given(tmp_path):
    f = tmp_path / "clicks.csv"
    f.write_text("user_id,item_id,timestamp,split\n"
                 "a,x,1,train\na,y,2,TRAIN\na,z,3,validation\na,w,4,test\n"
                 "b,x,1,train\nb,w,2,test\nb,v,3,test\nc,y,1,holdout\n")
    ds, report = load_dataset(f)
    assert report.dropped["bad_split"] == 1 and report.first_row["bad_split"] == 8
    got = per_user(given(ds), ds)
    assert got["a"] == {"train": ["x", "y"], "valid": (["x", "y"], ["z"]), "test": (["x", "y", "z"], ["w"])}
    assert got["b"] == {"train": ["x"], "test": (["x"], ["v", "w"])}  # every test event is a target
    with pytest.raises(DataError, match=r"row 8.*field 'split'.*train"):
        load_dataset(f, cleaning=CleaningConfig(strict=True))
    # Other protocols ignore the column: leave-one-out cuts all events, whatever their mark.
    loo = per_user(leave_one_out(ds), ds)
    assert loo["a"]["test"] == (["x", "y", "z"], ["w"]) and loo["b"]["test"] == (["x", "w"], ["v"])


def test_given_needs_a_split(tmp_path):
    f = tmp_path / "plain.csv"
    f.write_text("user_id,item_id,timestamp\na,x,1\na,y,2\na,z,3\n")
    ds, _ = load_dataset(f)
    with pytest.raises(ValueError, match="protocol 'given' needs data that carries its split"):
        make_split(ds, "given")


def test_sequence_file_with_a_stated_leave_one_out(tmp_path):
    f = tmp_path / "Beauty.txt"
    f.write_text("1 10 11 12 13\n2 11 13\n3 12 10 10\n")
    ds, report = load_dataset(f, split="leave-one-out")
    assert ds.has_split and any("--protocol given" in n for n in report.notes)
    got = per_user(given(ds), ds)
    assert got == per_user(leave_one_out(ds), ds)
    assert got["1"]["test"] == (["10", "11", "12"], ["13"]) and got["2"] == {"train": ["11", "13"]}
    pairs = tmp_path / "ml.txt"
    pairs.write_text("1 10\n2 11\n1 11\n1 12\n2 10\n2 12\n")
    ds2, _ = load_dataset(pairs, layout="pairs", split="loo")
    assert per_user(given(ds2), ds2)["2"]["test"] == (["11", "10"], ["12"])
    with pytest.raises(ValueError, match="split must be one of"):
        open_source(f, split="random")


# ---------------------------------------------------------------------- round trip through write_split
def test_a_written_split_loads_back_as_given(tmp_path):
    ds, _ = load_dataset("movielens-100k")
    sp = leave_one_out(ds)
    folder = write_split(sp, tmp_path / "loo")
    assert detect_format(folder) == "lmrec-split"
    back, report = load_dataset(folder)
    assert report.rows_kept == ds.n_events and back.has_split
    assert per_user(given(back), back) == per_user(sp, ds)  # the same train / valid / test per user


def test_a_written_temporal_split_keeps_training_events_and_targets(tmp_path):
    ds, _ = load_dataset("movielens-100k")
    sp = make_split(ds, "temporal")
    back, _ = load_dataset(write_split(sp, tmp_path / "temporal"))
    want, got = per_user(sp, ds), per_user(given(back), back)
    assert {u: v.get("train") for u, v in got.items()} == {u: v.get("train") for u, v in want.items()}
    for part in ("valid", "test"):
        assert ({u: v[part][1] for u, v in got.items() if part in v}
                == {u: v[part][1] for u, v in want.items() if part in v})
    # given's test history is training plus validation targets (temporal's also has the window's other events)
    u = next(u for u, v in got.items() if "test" in v)
    assert got[u]["test"][0][: len(got[u]["train"])] == got[u]["train"]


def test_a_dataset_with_a_split_saves_and_loads_it(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("user_id,item_id,timestamp,split\na,x,1,train\na,y,2,valid\na,z,3,test\n")
    ds, _ = load_dataset(f)
    back = Dataset.load(ds.save(tmp_path / "saved"))
    assert back.has_split
    assert np.array_equal(given(back).test.targets.values, given(ds).test.targets.values)
    saved = pl.read_parquet(tmp_path / "saved" / "events.parquet")
    assert saved["split"].to_list() == ["train", "valid", "test"]


def test_office_prefix_files_rebuild_every_users_sequence(tmp_path):
    """The Amazon Office set written as RecBole prefix files with histories cut at 20 items (its longest user
    has 94 events) rebuilds to the same 53,258 events, and 'given' equals leave-one-out on it."""
    from tests.conftest import SHARED_DATA

    office = SHARED_DATA / "amazon-office-2014" / "Office.inter.tsv"
    if not office.exists():
        pytest.skip(f"Amazon Office 2014 not found at {office} (set LMREC_SHARED_DATA)")
    ds, _ = load_dataset(office, mapping={"user_id": "user_idx"})
    sequences = {u: ds.user_sequence(u) for u in ds.user_map.raw_ids}
    folder = write_recbole_split(tmp_path / "office", sequences, max_len=20)
    back, report = load_dataset(folder)
    assert back.n_events == report.rows_kept == ds.n_events == 53_258
    assert all(back.user_sequence(u) == seq for u, seq in sequences.items())
    assert per_user(given(back), back) == per_user(leave_one_out(ds), ds)
    # The Office file's own split column is the same leave-one-out.
    assert per_user(given(ds), ds) == per_user(leave_one_out(ds), ds)


def test_split_parts_of_a_dotted_name_find_their_item_file(tmp_path):
    head = "user_id:token\titem_id:token\ttimestamp:float\n"
    for part, rows in (("train", "1\ta\t1\n1\tb\t2\n"), ("valid", "1\tc\t3\n"), ("test", "1\td\t4\n")):
        (tmp_path / f"amazon.beauty.{part}.inter").write_text(head + rows)
    (tmp_path / "amazon.beauty.item").write_text("item_id:token\ttitle:token_seq\na\tA\nb\tB\nc\tC\nd\tD\n")
    ds, _ = load_dataset(tmp_path)
    assert ds.name == "amazon.beauty" and ds.item_titles()[1:] == ["A", "B", "C", "D"]
    alone, report = load_dataset(tmp_path / "amazon.beauty.train.inter")
    assert any("one part of a given split" in n for n in report.notes) and alone.n_events == 2
