"""``benchmarks/_report.write_section`` replaces only its own section and keeps the section's hand-written
notes block across reruns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_benchmark


@pytest.fixture(scope="module")
def report():
    return load_benchmark("_report")


def test_a_rerun_replaces_the_generated_part_and_keeps_the_notes(report, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    report.write_section("a", "| x |\n| 1 |", doc)
    report.write_section("b", "other section", doc)
    text = doc.read_text()
    notes = "<!-- NOTES a -->\nWhy x is 1: a hand-written paragraph.\n<!-- END NOTES a -->"
    doc.write_text(text.replace("| 1 |\n", "| 1 |\n\n" + notes + "\n"))
    report.write_section("a", "| x |\n| 2 |", doc)
    text = doc.read_text()
    a = text[text.index("<!-- BEGIN a -->"):text.index("<!-- END a -->")]
    assert "| 2 |" in a and "| 1 |" not in a
    assert notes in a and a.index("| 2 |") < a.index(notes) < a.index("_Measured")
    assert "other section" in text and text.count("<!-- BEGIN a -->") == 1
    report.write_section("a", "| x |\n| 3 |", doc)  # and again: one copy of the notes
    assert doc.read_text().count("<!-- NOTES a -->") == 1


def test_a_section_without_notes_is_written_as_before(report, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    report.write_section("a", "body", doc)
    text = doc.read_text()
    assert "<!-- BEGIN a -->\nbody\n\n_Measured" in text and "NOTES" not in text


def test_a_rerun_with_fewer_table_rows_is_refused_unless_asked(report, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A section rebuilt from a result cache that this checkout lacks would lose the rows measured before."""
    doc = tmp_path / "benchmarks.md"
    monkeypatch.delenv(report.SHRINK_ENV, raising=False)
    report.write_section("a", "| model | x |\n|---|---|\n| m1 | 1 |\n| m2 | 2 |", doc)
    text = doc.read_text()
    notes = "<!-- NOTES a -->\n| a hand-written table | row |\n|---|---|\n| 1 | 2 |\n<!-- END NOTES a -->"
    doc.write_text(text.replace("| m2 | 2 |\n", "| m2 | 2 |\n\n" + notes + "\n"))
    before = doc.read_text()
    with pytest.raises(report.SectionShrinks, match="from 3 to 2 table rows"):
        report.write_section("a", "| model | x |\n|---|---|\n| m2 | 3 |", doc)
    assert doc.read_text() == before  # left as it was
    side = tmp_path / "benchmarks.a.new.md"
    assert "| m2 | 3 |" in side.read_text() and notes in side.read_text()
    report.write_section("a", "| model | x |\n|---|---|\n| m1 | 1 |\n| m2 | 3 |", doc)  # as many rows: fine
    assert "| m2 | 3 |" in doc.read_text() and notes in doc.read_text()
    monkeypatch.setenv(report.SHRINK_ENV, "1")
    report.write_section("a", "| model | x |\n|---|---|\n| m3 | 4 |", doc)
    text = doc.read_text()
    assert "| m3 | 4 |" in text and "| m1 |" not in text and notes in text
