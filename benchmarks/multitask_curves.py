"""Validation curves of the multi-task heads, trained alone and together (issue 18 part 6: why joint training
lags the single-task heads).

For one seed of the synthetic shop of ``benchmarks/multitask.py`` (same model settings, same split), fits
each variant and prints every epoch's per-head validation loss, the best epoch per head, what the fine-tune
phase did, and the next-item test HR@10 / NDCG@10. A variant is ``name`` or ``name:{json settings}``; the
names ``single_item``, ``single_type`` and ``single_value`` train one head, others all three unless the
settings give ``heads``.

Run: ``python benchmarks/multitask_curves.py 0 'single_item;joint:{"stopping": "per_head",
"head_finetune": false, "head_alone": false}'``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import multitask as B  # noqa: E402

from lmrec.data.synthetic_ecommerce import DAY, generate_ecommerce  # noqa: E402
from lmrec.prediction import tasks  # noqa: E402

SINGLE = {"single_item": ("next_item",), "single_type": ("next_type",), "single_value": ("value",)}


def main(seed: int, variants: list[str]) -> None:
    ds = generate_ecommerce(seed=seed, **B.SHOP).dataset()
    test_cut, _ = tasks.value_cuts(ds, B.HORIZON, 1)
    hist, future = tasks.time_cut(ds, test_cut, int(B.HORIZON * DAY))
    nx_users, nx_items = B._first_new_item(hist, future)
    print(f"seed {seed}: {hist.n_events:,} training events, {len(nx_users)} next-item test users", flush=True)
    for v in variants:
        name, _, raw = v.partition(":")
        kw = json.loads(raw) if raw else {}
        heads = tuple(kw.pop("heads", SINGLE.get(name, ("next_item", "next_type", "value"))))
        t0 = time.perf_counter()
        m = B._model(heads, seed, False, **kw).fit(hist)
        tr = m.train_result_
        assert tr is not None
        print(f"== {v}: fit {time.perf_counter() - t0:.1f} s, {tr['epochs_run']} epochs, best epochs "
              f"{tr.get('best_epochs') or tr['best_epoch']}, stopped {tr.get('stopped_at')}")
        for e in tr["metrics"]:
            losses = " ".join(f"{k[4:]} {e[k]:.4f}" for k in sorted(e)
                              if k.startswith("val_") and not k.endswith("_neg"))
            print(f"  epoch {int(e['epoch']):2d} {losses}")
        for head, f in (tr.get("finetune") or {}).items():
            kept = "" if f["kept"] else ", snapshot kept"
            print(f"  fine-tune {head}: {f['val_before']:.4f} -> {f['val_after']:.4f} "
                  f"(epoch {f['best_epoch']} of {f['epochs_run']}){kept}")
        for head, a in (tr.get("alone") or {}).items():
            print(f"  alone {head}: {a['val_alone']:.4f} (epoch {a['best_epoch']} of {a['epochs_run']}) "
                  f"vs joint phases {a['val_joint']:.4f}{', served alone' if a['kept'] else ''}")
        if "next_item" in m.heads:
            r = B._next_item_metrics(m, hist, nx_users, nx_items)
            print(f"  test HR@10 {r['HR@10']:.4f} NDCG@10 {r['NDCG@10']:.4f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(";"))
