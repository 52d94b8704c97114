"""Every cleaning rule: what is dropped, why, where, and what strict mode says instead."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrec.data.cleaning import ROW, CleaningConfig, CleaningReport, DataError, clean_events, clean_rows


def _events(n: int = 2, **cols) -> pl.DataFrame:
    n = len(next(iter(cols.values()))) if cols else n
    base = {
        "user_id": ["u"] * n,
        "item_id": ["i"] * n,
        "timestamp": [str(1_600_000_000 + k) for k in range(n)],
    }
    base.update(cols)
    return pl.DataFrame(base)


def test_clean_rows_types_and_derives_stable_event_ids():
    df = _events(user_id=[" u1 ", "u2"], item_id=["12.0", "7"], value=["4.5", None])
    out, report = clean_events(df)
    assert out["user_id"].to_list() == ["u1", "u2"] and out["item_id"].to_list() == ["12.0", "7"]
    assert out.schema["timestamp"] == pl.Int64 and out.schema["value"] == pl.Float64
    assert out["event_type"].to_list() == ["view", "view"]
    again, _ = clean_events(df)
    assert out["event_id"].to_list() == again["event_id"].to_list()  # same input, same ids
    assert out["event_id"].n_unique() == 2 and report.rows_kept == 2 and report.rows_dropped == 0


def test_missing_fields_are_dropped_and_counted_with_first_row():
    df = _events(user_id=["a", None, "", "b", "c"], item_id=["x", "x", "x", None, "x"],
                 timestamp=["1", "2", "3", "4", ""])
    out, report = clean_events(df)
    assert out["user_id"].to_list() == ["a"]
    assert report.dropped == {"missing_user_id": 2, "missing_item_id": 1, "missing_timestamp": 1}
    assert report.first_row == {"missing_user_id": 2, "missing_item_id": 4, "missing_timestamp": 5}
    assert report.rows_read == 5 and report.rows_kept == 1 and report.rows_dropped == 4
    lines = report.lines()
    assert "dropped 4" in lines[0] and any("missing_user_id: 2 (first at row 2)" in line for line in lines)


def test_unparseable_value_and_timestamp():
    df = _events(timestamp=["1600000000", "soon", "1600000002"], value=["5", "5", "five"])
    out, report = clean_events(df)
    assert out.height == 1
    assert report.dropped == {"bad_timestamp": 1, "bad_value": 1}
    assert report.first_row == {"bad_timestamp": 2, "bad_value": 3}


@pytest.mark.parametrize(("raw", "unit", "expected"), [
    ("1600000000", "auto", 1_600_000_000),
    ("1600000000123", "auto", 1_600_000_000),  # milliseconds recognised
    ("1600000000.9", "s", 1_600_000_000),  # fractional seconds floor
    ("1600000000123", "ms", 1_600_000_000),
    ("1600000", "ms", 1_600),  # the unit wins over the guess
    ("2020-09-13T12:26:40Z", "auto", 1_600_000_000),
    ("2020-09-13T14:26:40+02:00", "auto", 1_600_000_000),
    ("2020-09-13 12:26:40", "auto", 1_600_000_000),  # naive text is UTC
    ("2020-09-13T12:26:40Z", "ms", 1_600_000_000),  # ISO text carries its own unit
    ("2020-09-13", "auto", 1_599_955_200),
])
def test_timestamp_units_and_iso_text(raw, unit, expected):
    out, _ = clean_events(_events(timestamp=[raw]), CleaningConfig(timestamp_unit=unit))
    assert out["timestamp"].to_list() == [expected]


def test_numeric_and_datetime_timestamp_columns():
    df = pl.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"],
                       "timestamp": [1_600_000_000, 1_600_000_000_000, 10**30]}, strict=False)
    out, report = clean_events(df)
    assert out["timestamp"].to_list() == [1_600_000_000, 1_600_000_000]
    assert report.dropped == {"bad_timestamp": 1}  # out of range is unparseable, not a crash
    from datetime import UTC, datetime

    dt = pl.DataFrame(
        {"user_id": ["a"], "item_id": ["x"], "timestamp": [datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)]}
    )
    assert clean_events(dt)[0]["timestamp"].to_list() == [1_600_000_000]


def test_duplicates_by_id_and_by_fields():
    df = _events(user_id=["a", "a", "a", "b", "b"], item_id=["x", "x", "y", "x", "x"],
                 timestamp=["1", "1", "2", "5", "6"], event_id=[None, None, None, "e1", "e1"])
    out, report = clean_events(df)
    assert out.height == 3 and report.dropped == {"duplicate": 2}
    assert report.first_row["duplicate"] == 2
    kept = clean_events(df, CleaningConfig(drop_duplicates=False))[0]
    assert kept.height == 5


def test_unknown_items_dropped_only_when_asked():
    df = _events(item_id=["x", "ghost", "y"])
    items = pl.Series(["x", "y"])
    out, report = clean_events(df, item_ids=items)
    assert out["item_id"].to_list() == ["x", "y"] and report.dropped == {"unknown_item": 1}
    assert report.first_row["unknown_item"] == 2
    assert clean_events(df, CleaningConfig(drop_unknown_items=False), item_ids=items)[0].height == 3


def test_event_types_aliases_unknown_and_declared():
    df = _events(event_type=["view", "AddToCart", " transaction ", "pv", "teleport", "", None])
    out, report = clean_events(df)
    assert out["event_type"].to_list() == ["view", "cart", "purchase", "view"]
    assert report.dropped == {"unknown_event_type": 1, "missing_event_type": 2}
    declared = clean_events(df, CleaningConfig(event_types=("teleport",)))[0]
    assert "teleport" in declared["event_type"].to_list()
    assert clean_events(df, CleaningConfig(allow_any_event_type=True))[0].height == 5


def test_default_event_type_when_column_absent():
    out, _ = clean_events(_events(), CleaningConfig(default_event_type="rating"))
    assert set(out["event_type"]) == {"rating"}


def _grid(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs],
                         "timestamp": [str(k) for k in range(len(pairs))]})


def test_min_counts_single_pass_versus_kcore():
    # Items: a ×3, b ×2, c ×1. One pass drops c, which leaves u2 with a single event; only k-core drops u2
    # too.
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "b"), ("u3", "a"), ("u4", "a")]
    cfg = CleaningConfig(min_user_events=2, min_item_events=2)
    once, report = clean_events(_grid(pairs), cfg)
    assert sorted(zip(once["user_id"], once["item_id"], strict=True)) == [
        ("u1", "a"), ("u1", "b"), ("u2", "a"), ("u3", "a"), ("u3", "b")]
    assert report.dropped == {"below_min_user_events": 1, "below_min_item_events": 1}
    assert report.first_row == {"below_min_user_events": 7, "below_min_item_events": 4}
    core, core_report = clean_events(
        _grid(pairs), CleaningConfig(min_user_events=2, min_item_events=2, kcore=True)
    )
    assert sorted(zip(core["user_id"], core["item_id"], strict=True)) == [
        ("u1", "a"), ("u1", "b"), ("u3", "a"), ("u3", "b")]
    assert core_report.dropped == {"below_min_user_events": 2, "below_min_item_events": 1}
    assert any("k-core" in n and "3 round(s)" in n for n in core_report.notes)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=0, max_size=60),
       st.integers(1, 4), st.integers(1, 4))
def test_kcore_reaches_a_fixed_point(pairs, ku, ki):
    df = _grid([(f"u{u}", f"i{i}") for u, i in pairs])
    cfg = CleaningConfig(min_user_events=ku, min_item_events=ki, kcore=True, drop_duplicates=False)
    core, report = clean_events(df, cfg)
    if core.height:
        assert core.group_by("user_id").len()["len"].min() >= ku
        assert core.group_by("item_id").len()["len"].min() >= ki
    # A fixed point: cleaning again removes nothing.
    again, _ = clean_events(core.drop(ROW), cfg)
    assert again.height == core.height
    assert report.rows_kept + report.rows_dropped == report.rows_read == len(pairs)


@pytest.mark.parametrize(("df", "field", "row", "expected"), [
    (_events(user_id=["a", None]), "user_id", 2, "a non-empty id"),
    (_events(timestamp=["1", "noon"]), "timestamp", 2, "ISO-8601"),
    (_events(value=["1", "x"]), "value", 2, "a number"),
    (_events(event_type=["view", "teleport"]), "event_type", 2, "one of"),
    (_events(event_id=["e", "e"]), "event_id", 2, "each event once"),
])
def test_strict_mode_names_file_row_field_and_expectation(df, field, row, expected):
    with pytest.raises(DataError) as err:
        clean_events(df, CleaningConfig(strict=True), source="clicks.csv")
    e = err.value
    assert (e.source, e.row, e.field) == ("clicks.csv", row, field)
    assert expected in (e.expected or "")
    assert str(e).startswith(f"file clicks.csv, row {row}, field '{field}'")


def test_strict_unknown_item():
    with pytest.raises(DataError, match="row 2.*item_id"):
        clean_events(_events(item_id=["x", "ghost"]), CleaningConfig(strict=True), source="f",
                     item_ids=pl.Series(["x"]))


def test_missing_column_is_an_error_even_for_an_empty_chunk():
    with pytest.raises(DataError, match="field 'timestamp': missing column"):
        clean_events(pl.DataFrame({"user_id": ["a"], "item_id": ["x"]}), source="f.csv")
    header_only = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String})
    with pytest.raises(DataError, match="missing column"):
        clean_events(header_only)


def test_empty_input_gives_an_empty_typed_table():
    out, report = clean_events(pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String,
                                                    "timestamp": pl.String}))
    assert out.height == 0 and out.schema["timestamp"] == pl.Int64
    assert report.rows_read == 0 and report.rows_kept == 0
    rep = CleaningReport()
    assert clean_rows(pl.DataFrame(), CleaningConfig(), rep).height == 0


def test_report_merge_and_dict():
    a, b = CleaningReport("a"), CleaningReport("b")
    a.rows_read, b.rows_read = 3, 4
    a.drop("bad_value", pl.Series([3]))
    b.drop("bad_value", pl.Series([2, 9]))
    a.merge(b)
    d = a.to_dict()
    assert d["rows_read"] == 7 and d["dropped"] == {"bad_value": 3} and d["first_row"] == {"bad_value": 3}


def test_config_validation():
    with pytest.raises(ValueError, match="timestamp_unit"):
        CleaningConfig(timestamp_unit="h")
    with pytest.raises(ValueError, match=">= 0"):
        CleaningConfig(min_user_events=-1)
