"""The dashboard in a real browser (headless Chromium through Playwright): the experiment view and a user's
timeline beside their recommendations, rendered from a running service, with screenshots.

Chromium: ``$LMREC_CHROMIUM``, else a ``chromium`` / ``chromium-browser`` / ``google-chrome`` on the PATH
(Debian's ``chromium`` package; ``make test`` installs it where it can), else Playwright's own download. The
test is skipped when none is found, except under CI (``CI=true``), where a missing browser is a failure, not
a silent skip. Screenshots go to the test's temporary folder, and are copied to ``$LMREC_DASHBOARD_SHOTS``
when it is set (docs/img holds the ones described in docs/serving.md).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from lmrec.evaluation.abtest import Arm, ExperimentSpec
from lmrec.experiment import train
from lmrec.experiment.config import validate
from lmrec.store.keys import KeyStore
from tests.serving.serving_helpers import make_events

pytestmark = [pytest.mark.slow, pytest.mark.browser]

USERS = [f"u{i}" for i in range(30)]
ARMS = [{"name": "popular", "version": "pop-loo", "share": 0.5},
        {"name": "knn", "version": "knn-loo", "share": 0.5}]
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """A Chromium executable for Playwright, or ``None`` to let Playwright use its own."""
    env = os.environ.get("LMREC_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a Playwright Browser
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        except Error as exc:
            if in_ci:
                pytest.fail(f"no Chromium for the browser test ({str(exc).splitlines()[0]}); install "
                            "Debian's chromium or set LMREC_CHROMIUM")
            pytest.skip(f"no Chromium: {str(exc).splitlines()[0]}")
        yield b
        b.close()


def _shot(page, tmp_path: Path, name: str) -> Path:  # noqa: ANN001 - a Playwright Page
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000  # a real picture, not an empty page
    out = os.environ.get("LMREC_DASHBOARD_SHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(out) / path.name)
    return path


def _train_versions(registry: Path, tmp_path: Path) -> None:
    """Two more versions in the registry, trained as `lmrec train` does (leave-one-out, a training.json with
    their validation figures): the offline side of the versions view."""
    csv = tmp_path / "events.csv"
    make_events().write_csv(csv)
    for version, model in (("pop-loo", {"name": "most-popular"}), ("knn-loo", {"name": "itemknn", "k": 20})):
        train(validate({"data": {"dataset": str(csv)}, "model": model, "split": {"protocol": "leave-one-out"},
                        "out": str(registry / version), "seed": 0}))


def test_dashboard_experiment_view_and_user_timeline(start, browser, tmp_path: Path) -> None:
    s = start(dev_mode=False, key_cache_seconds=0, version="v1")
    _train_versions(s.models_dir, tmp_path)
    admin, _ = KeyStore(s.store).create("dashboard", ["admin"])
    h = {"X-API-Key": admin}
    assert s.client.post("/v1/admin/experiments", headers=h, json={
        "name": "pop-vs-knn", "salt": "s1", "arms": ARMS, "window_s": 3600,
        "description": "most popular vs item kNN"}).status_code == 201
    spec = ExperimentSpec("pop-vs-knn", tuple(Arm(**a) for a in ARMS), salt="s1")
    now = int(time.time()) + 1
    events = []
    for n, u in enumerate(USERS):
        items = [i["item_id"] for i in s.get(f"/v1/users/{u}/recommendations", params={"k": 3},
                                             headers=h).json()["items"]]
        if spec.assign(u).name == "knn" or n % 3 == 0:  # the kNN arm's users click more
            events.append({"user_id": u, "item_id": items[0], "event_type": "click", "timestamp": now})
        if n % 4 == 0:
            events.append({"user_id": u, "item_id": items[0], "event_type": "purchase", "timestamp": now + 5,
                           "value": 20.0 + n})
    events.append({"user_id": "u1", "item_id": "heat", "event_type": "cart", "timestamp": now + 10})
    assert s.client.post("/v1/events", json={"events": events}, headers=h).status_code == 200
    report = s.client.get("/v1/admin/experiments/pop-vs-knn", headers=h).json()

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(s.url + "/dashboard")
    page.fill("#key", admin)
    page.evaluate("location.hash = '#experiments'")
    exp = page.locator('.experiment[data-name="pop-vs-knn"]')
    exp.locator("tr.arm").nth(1).wait_for()
    text = exp.inner_text()
    assert "pop-vs-knn" in text and "running" in text and "most popular vs item kNN" in text
    for arm in report["arms"]:
        row = exp.locator(f'tr.arm[data-arm="{arm["arm"]}"]').inner_text()
        assert arm["version"] in row and str(arm["users"]) in row
        ctr = arm["metrics"]["click_through"]
        assert f"{100 * ctr['value']:.1f}%" in row and f"{100 * ctr['low']:.1f}%" in row
    assert "popular (control)" in text
    assert exp.locator(".ci").count() == 2 * 4  # an interval bar per arm and metric
    tests = exp.locator("table.tests").inner_text()
    assert "knn vs popular" in tests and "two-proportion z" in tests and "Welch t" in tests
    ctr_test = next(t for t in report["tests"] if t["metric"] == "click_through")
    assert f"{ctr_test['p_value']:.4f}" in tests
    _shot(page, tmp_path, "dashboard-experiments")

    page.goto(s.url + "/dashboard?user=u1#user")
    page.locator("#recs li").first.wait_for()
    timeline = page.locator("#timeline").inner_text()
    assert "Heat (1995)" in timeline and "cart" in timeline
    first = page.locator("#timeline tr").first.inner_text()
    assert "heat" in first and "cart" in first  # newest first
    recs = page.locator("#recs li")
    assert 1 <= recs.count() <= 10
    assert all(recs.nth(i).locator(".why").inner_text().strip() for i in range(recs.count()))  # explained
    note = page.locator("#user-note").inner_text()
    assert f"arm {spec.assign('u1').name}" in note and "experiment pop-vs-knn" in note
    _shot(page, tmp_path, "dashboard-user-timeline")

    page.evaluate("location.hash = '#versions'")
    page.locator("#versions tr").nth(1).wait_for()
    versions = page.locator("#versions").inner_text()
    assert all(v in versions for v in ("v1", "v2", "pop-loo", "knn-loo", "itemknn", "pop-vs-knn/knn"))
    knn_row = page.locator("#versions tr", has_text="knn-loo").inner_text()
    assert "NDCG@10" in knn_row and "pop-vs-knn/knn" in knn_row  # offline and online figures side by side
    _shot(page, tmp_path, "dashboard-versions")

    page.evaluate("location.hash = '#activity'")
    page.locator("#calls tr").first.wait_for()
    assert "/v1/events" in page.locator("#calls").inner_text()
    assert "purchase" in page.locator("#event-rows").inner_text()
    _shot(page, tmp_path, "dashboard-activity")
    page.close()
