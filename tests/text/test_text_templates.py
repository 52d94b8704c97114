"""Item text templates: fields, labels, attributes, canonical strings."""

from __future__ import annotations

import pytest

from lmrec.text import ItemTemplate


def test_default_template_renders_fields_in_order(items):
    texts = ItemTemplate().render(items)
    assert texts[0] == "Heat (1995). Genres: Action, Crime. Brand: Warner. Tags: heist, LA"
    assert texts[1] == "Toy Story (1995). Genres: Animation. Description: Toys come alive."
    assert texts[2] == "Description: A quiet film."  # missing title, empty list and empty brand are skipped


def test_parse_labels_and_attribute_keys(items):
    tpl = ItemTemplate.parse("brand:Maker, title")
    assert tpl.fields == (("brand", "Maker"), ("title", ""))
    assert tpl.render(items)[0] == "Maker: Warner. Heat (1995)"
    assert str(tpl) == "brand:Maker, title"


def test_canonical_round_trips_and_differs():
    a = ItemTemplate.parse("title, categories:Genres")
    assert ItemTemplate.parse(a.canonical()) == a
    assert a.canonical() != ItemTemplate.parse("title, categories:Genre").canonical()
    assert a.canonical() != ItemTemplate.parse("categories:Genres, title").canonical()
    assert a.canonical() != ItemTemplate.parse("title, categories:Genres", max_tokens=64).canonical()


def test_bad_templates_are_refused():
    with pytest.raises(ValueError, match="at least one field"):
        ItemTemplate.parse(" , ")
    with pytest.raises(ValueError, match="empty field name"):
        ItemTemplate.parse("title, :Label")


def test_bad_attributes_json_names_the_item(items):
    bad = items.head(1).with_columns(attributes=__import__("polars").lit("{oops"))
    with pytest.raises(ValueError, match="item 'a': attributes is not valid JSON"):
        ItemTemplate().render(bad)
