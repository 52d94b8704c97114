"""One recommendation request's model time for a saved model, with 1 and 2 torch threads (prints only).

Loads a model folder (e.g. the ``models/v1`` of ``benchmarks/serve_load.py --workdir DIR``) and times
``recommend_indices`` for one known user at a time (100 users, seeded), the model part of a
``GET /v1/users/{id}/recommendations`` answer, alternately with 2 and 1 torch threads:

    python benchmarks/request_threads.py /tmp/serve-load/models/v1
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from lmrec.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    model = load_model(args.model_dir)
    assert model.user_map is not None
    users = np.random.default_rng(1).integers(1, len(model.user_map), args.users)

    def one(u: int) -> None:
        model.recommend_indices(model.histories_for(np.array([u])), np.array([u]), 10)

    print(f"{model!r}; load average {os.getloadavg()}")
    for _ in range(args.rounds):
        for threads in (2, 1):
            torch.set_num_threads(threads)
            one(int(users[0]))
            t0 = time.perf_counter()
            for u in users:
                one(int(u))
            ms = (time.perf_counter() - t0) / len(users) * 1000
            print(f"torch threads {threads}: {ms:.2f} ms per request (mean of {len(users)})", flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
