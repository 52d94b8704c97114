"""Exposure re-ranking (lmrec.data.exposure): the greedy rules hold when they can, relax when they cannot,
and an inactive policy changes nothing."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lmrec.data.exposure import (
    ExposurePolicy,
    ItemGroups,
    popularity_buckets,
    rerank,
    rerank_rows,
    tail_items,
)

# items 1..8: 1-4 "A", 5-6 "B", 7 "A"+"C", 8 none
GROUPS = ItemGroups.from_lists([[], ["A"], ["A"], ["A"], ["A"], ["B"], ["B"], ["A", "C"], []])


def test_groups_membership_and_weights() -> None:
    assert GROUPS.labels == ("A", "B", "C")
    m = GROUPS.membership.toarray()
    assert m.shape == (9, 3) and m[7].tolist() == [1, 0, 1] and m[8].sum() == 0 and m[0].sum() == 0
    w = GROUPS.weights().toarray()
    assert w[7].tolist() == [0.5, 0.0, 0.5] and w[1].tolist() == [1.0, 0.0, 0.0]


def test_inactive_policy_keeps_the_order() -> None:
    cand = np.array([3, 1, 0, 2, 5])
    assert rerank(cand, 3, ExposurePolicy(), GROUPS, None).tolist() == [0, 1, 3]  # padding skipped


def test_group_cap_is_kept_when_candidates_allow() -> None:
    cand = np.array([1, 2, 3, 4, 7, 5, 8, 6])  # all A first
    pol = ExposurePolicy(max_group_share=0.5)  # cap: 2 of 4
    pos = rerank(cand, 4, pol, GROUPS, None)
    items = cand[pos]
    assert items.tolist() == [1, 2, 5, 8]  # the best two A, then the best non-A in order
    counts = GROUPS.membership[items].toarray().sum(0)
    assert counts.max() <= pol.cap(4)


def test_cap_relaxes_rather_than_cut_the_list() -> None:
    cand = np.array([1, 2, 3, 4])  # only A
    pos = rerank(cand, 3, ExposurePolicy(max_group_share=0.34), GROUPS, None)
    assert cand[pos].tolist() == [1, 2, 3]


def test_tail_minimum_reserves_slots() -> None:
    tail = np.zeros(9, dtype=bool)
    tail[[6, 8]] = True
    cand = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    pos = rerank(cand, 4, ExposurePolicy(min_tail_share=0.5), GROUPS, tail)
    items = cand[pos].tolist()
    assert items == [1, 2, 6, 8]  # head items while slots allow, then the two best tail items
    assert sum(tail[items]) == 2


def test_both_rules_and_rows() -> None:
    tail = np.zeros(9, dtype=bool)
    tail[6] = True
    cand = np.array([[1, 2, 3, 7, 5, 6, 8, 4], [5, 6, 1, 2, 3, 4, 7, 8]])
    scores = -np.arange(8, dtype=np.float32)[None, :].repeat(2, 0)
    idx, sc = rerank_rows(cand, scores, 4, ExposurePolicy(max_group_share=0.5, min_tail_share=0.25), GROUPS,
                          tail)
    for row in idx:
        assert GROUPS.membership[row].toarray().sum(0).max() <= 2
        assert tail[row].sum() >= 1
        assert len(set(row.tolist())) == 4
    assert idx[0].tolist() == [1, 2, 5, 6]
    assert sc[0].tolist() == [0.0, -1.0, -4.0, -5.0]  # scores travel with their items


def test_policy_validation_and_text() -> None:
    with pytest.raises(ValueError, match="max_group_share"):
        ExposurePolicy(max_group_share=0.0)
    with pytest.raises(ValueError, match="min_tail_share"):
        ExposurePolicy(min_tail_share=1.5)
    p = ExposurePolicy(0.3, 0.2)
    assert p.active and p.cap(10) == 3 and p.tail_slots(10) == 2 and p.candidates(10) == 100
    assert "30%" in p.describe() and "20%" in p.describe()
    assert ExposurePolicy().describe() == "none" and ExposurePolicy().candidates(10) == 10


def test_groups_from_an_item_attribute() -> None:
    items = pl.DataFrame({
        "categories": [["x"], [], None],
        "attributes": [json.dumps({"brand": "acme"}), json.dumps({"brand": ["b1", "b2"]}), None],
    })
    g = ItemGroups.of_items(items, "brand")
    assert g.labels == ("acme", "b1", "b2") and g.membership.toarray()[2].tolist() == [0, 1, 1]
    assert ItemGroups.of_items(items).labels == ("x",)
    with pytest.raises(ValueError, match="no item has an attribute 'colour'"):
        ItemGroups.of_items(items, "colour")


def test_tail_is_the_last_third_of_events() -> None:
    pop = np.array([0, 60, 30, 5, 3, 2, 0])
    assert popularity_buckets(pop).tolist() == [2, 0, 1, 2, 2, 2, 2]
    t = tail_items(pop)
    assert not t[0] and t[3:].all() and not t[1:3].any()
