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
