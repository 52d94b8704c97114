"""Write the synthetic "bring your own data" example: a shop's clicks and its products (docs/data.md).

Made up from scratch (no real data): 48 products in 6 departments, 80 visitors who each browse mostly one
department, in the order of its products, over two weeks of March 2024. Run it again to get the same files:

    python examples/byod/make_examples.py
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent

DEPARTMENTS = {
    "Running|Shoes": ["Trail running shoe", "Road running shoe", "Racing flat", "Running sock pack",
                      "Insoles for runners", "Reflective running vest", "Hydration belt", "Shoe laces"],
    "Kitchen|Coffee": ["Arabica coffee beans 1 kg", "Hand coffee grinder", "Pour-over dripper",
                       "Paper filters", "Gooseneck kettle", "Milk frother", "Espresso cups", "Coffee scale"],
    "Games|Board games": ["Cooperative island game", "Trading card starter set", "Chess set, wooden",
                          "Word puzzle game", "Dice tower", "Card sleeves", "Strategy game of railways",
                          "Party quiz game"],
    "Office|Paper": ["Dotted notebook A5", "Fountain pen", "Bottle of blue ink", "Desk organiser",
                     "Sticky notes", "Weekly planner", "Highlighter set", "Paper clips"],
    "Electronics|Audio": ["Wireless headphones", "In-ear earbuds", "Headphone stand", "USB-C audio adapter",
                          "Portable speaker", "Ear cushions", "Audio cable, braided", "Charging case"],
    "Garden|Plants": ["Monstera in a pot", "Cactus trio", "Potting soil 10 l", "Watering can",
                      "Plant mister", "Terracotta pots", "Liquid fertiliser", "Pruning shears"],
}


def main(seed: int = 7) -> None:
    rng = random.Random(seed)
    products = []
    for d, (dept, names) in enumerate(DEPARTMENTS.items()):
        for i, name in enumerate(names):
            products.append({"sku": f"P{d + 1}{i + 1:02d}", "name": name, "category": dept})
    by_dept = [[p["sku"] for p in products if p["category"] == dept] for dept in DEPARTMENTS]

    start = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    rows = []
    for v in range(1, 81):
        main_dept = by_dept[(v - 1) % len(by_dept)]
        other = by_dept[rng.randrange(len(by_dept))]
        t = start + timedelta(minutes=rng.randrange(0, 14 * 24 * 60))
        pos = rng.randrange(3)
        for _ in range(rng.randint(6, 14)):
            if rng.random() < 0.8:  # mostly the next product of the visitor's department, in catalogue order
                item = main_dept[pos % len(main_dept)]
                pos += 1
            else:
                item = other[rng.randrange(len(other))]
            action = rng.choices(["view", "cart", "purchase"], weights=[7, 2, 1])[0]
            rows.append({"visitor": f"v{v:03d}", "product": item, "action": action,
                         "when": t.strftime("%Y-%m-%dT%H:%M:%SZ")})
            t += timedelta(minutes=rng.randint(1, 240))

    with open(HERE / "products.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["sku", "name", "category"])
        w.writeheader()
        w.writerows(products)
    with open(HERE / "clicks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["visitor", "product", "action", "when"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
