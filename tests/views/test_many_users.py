"""Many users at once: one `streamlit run` server on loopback, eight real browser sessions running Explore
together, a bounded soak of repeated runs with the server's memory measured, and Stop under a shared server.

Each session runs different settings (checkpoint, size, problems, budget, seed) and must see exactly the
numbers that the engine computes for its own settings, recomputed here in the test process. The soak is
bounded by SOAK_RUNS runs and SOAK_SECONDS seconds, whichever comes first; the server's resident memory
(VmRSS from /proc) after it may exceed the memory before it by at most RSS_GROWTH_MAX. Figures go to
artifacts/many-users.json. Needs the system Chromium at /usr/bin/chromium (never downloads a browser, never
skips: without it the test fails saying how to install it).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import torch

from tests.browser_support import ROOT, chromium, streamlit_server
from tests.dashboard_checkpoints import make_checkpoints
from ttc.app.catalog import file_stamps, load_file_entry
from ttc.app.settings import sanitize
from ttc.app.trace import compute_trace

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "artifacts"
SESSIONS = 8  # browser contexts running Explore at the same time
SOAK_RUNS = 40  # runs in the soak (new seeds, so each is computed, cached and drawn), at most
SOAK_SECONDS = 30.0  # and at most this long
RSS_GROWTH_MAX = 64 * 2**20  # the server may grow by at most this much over the soak (seen: 5-20 MiB)
CHECKPOINTS = ("prefix_sums-recursive", "prefix_sums-deq", "prefix_sums-explicit", "mazes-recursive")

# Streamlit's theme wraps a figure's title in <b> tags: compare the text without tags
FIGURE = """title => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    if (gd.layout && gd.layout.title && gd.layout.title.text.replace(/<[^>]*>/g, '') === title)
      return gd.data.map(d => ({name: d.name, x: Array.from(d.x || []), y: Array.from(d.y || [])}));
  }
  return null;
}"""


def rss(pid: int) -> int:
    """Resident memory of a process in bytes (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpts")
    make_checkpoints(path)
    return path


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    """`streamlit run app.py` on a free loopback port over the tiny checkpoints; yields (base URL, pid)."""
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with streamlit_server(folder, log, {"OMP_NUM_THREADS": "1", "TTC_AUTO_RUN_SECONDS": "600"},
                          ("--server.fileWatcherType", "none")) as (base, p):
        yield base, p.pid


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def settings_for(i: int, seed: int | None = None) -> dict[str, str]:
    """Distinct settings per session: checkpoint, size, problems, budget and seed all differ."""
    ck = CHECKPOINTS[i % len(CHECKPOINTS)]
    size = 7 + 2 * (i // 4) if ck.startswith("mazes") else 20 + 4 * i
    return {
        "checkpoint": ck,
        "size": str(size),
        "n": str(6 + i),
        "budget": str(8 + 2 * i),
        "seed": str(i if seed is None else seed),
        # float32: the server's runs and this process's must agree to 1e-5, and bf16's rounding depends on how the
        # work is split over threads (the server and the test run different thread counts)
        "precision": "fp32",
    }


def expected(folder: Path, query: dict[str, str]) -> dict:
    """What a session with these settings must show: the engine's own trace, computed here."""
    entries = [load_file_entry(s) for s in file_stamps(folder)]
    s, warns = sanitize(query, entries)
    assert not warns, warns
    entry = next(e for e in entries if e.name == s.checkpoint)
    t = compute_trace(entry.ck, s)
    return {"settings": s, "x": t.k.tolist(), "accuracy": t.accuracy.tolist(), "residual": t.residual.tolist()}


LENGTH = """([title, n]) => [...document.querySelectorAll('.js-plotly-plot')].some(
  gd => gd.layout && gd.layout.title && gd.layout.title.text.replace(/<[^>]*>/g, '') === title
        && gd.data[0].x.length === n)"""


CHART = """title => [...document.querySelectorAll('.js-plotly-plot')].some(
  gd => gd.layout && gd.layout.title && gd.layout.title.text.replace(/<[^>]*>/g, '') === title && gd.data.length)"""


def shown(page, iters: int) -> dict:
    """What a session's page shows once its final charts are drawn: its URL's settings, the accuracy and
    residual curves ("Done:" is drawn before the final charts, so wait for their length)."""
    for title in ("Accuracy vs iterations", "Residual per iteration"):
        try:
            page.wait_for_function(LENGTH, arg=[title, iters], timeout=20_000)
        except Exception:
            state = page.evaluate(
                "() => [document.visibilityState, "
                "document.querySelectorAll('.js-plotly-plot').length, "
                "document.querySelectorAll('[data-testid=stPlotlyChart]').length]"
            )
            raise AssertionError(f"{page.url} {title} {iters}: {state} {page.inner_text('body')[-1500:]!r}") from None
    acc, res = page.evaluate(FIGURE, "Accuracy vs iterations"), page.evaluate(FIGURE, "Residual per iteration")
    return {"query": {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}, "accuracy": acc, "residual": res}


def assert_own_results(page, want: dict) -> None:
    s, got = want["settings"], shown(page, len(want["x"]))
    assert got["query"]["checkpoint"] == s.checkpoint and got["query"]["seed"] == str(s.seed)
    assert page.get_by_text(f"{s.n} {s.task} problems of size {s.size} (seed {s.seed})").count() == 1
    acc = next(d for d in got["accuracy"] if d["name"] == s.checkpoint)
    assert acc["x"] == want["x"] and acc["y"] == pytest.approx(want["accuracy"])
    res = next(d for d in got["residual"] if d["name"] == s.checkpoint)
    assert len(res["y"]) == len(want["residual"])
    for a, b in zip(res["y"], want["residual"], strict=True):  # NaN (no sample running) travels as null
        assert (a is None and (math.isnan(b) or b <= 0)) or a == pytest.approx(b, rel=1e-5), (a, b)
    assert {d["name"] for d in got["accuracy"] if "95% interval" not in d["name"]} <= {
        s.checkpoint, f"{s.checkpoint} (per bit)", f"{s.checkpoint} (per cell)", "trained at 6 iterations"}


def wait_all_done(pages, timeout: float) -> float:
    """Wait until every page shows a finished run; returns the seconds it took."""
    t0, pending = time.time(), set(range(len(pages)))
    while pending:
        for i in list(pending):
            if pages[i].get_by_text("Done:").count():
                pending.discard(i)
        assert time.time() - t0 < timeout, f"sessions {sorted(pending)} did not finish in {timeout} s"
        time.sleep(0.1)
    return time.time() - t0


def residual_shown(page, want: dict) -> bool:
    """Whether the page's residual curve is now exactly the one of want's settings."""
    fig = page.evaluate(FIGURE, "Residual per iteration") or []
    ys = next((d["y"] for d in fig if d["name"] == want["settings"].checkpoint), None)
    if ys is None or len(ys) != len(want["residual"]):
        return False
    return all(
        (a is None and (math.isnan(b) or b <= 0)) or (a is not None and math.isclose(a, b, rel_tol=1e-5))
        for a, b in zip(ys, want["residual"], strict=True)
    )


def wait_all_showing(pages, wants, timeout: float) -> None:
    t0, pending = time.time(), set(range(len(pages)))
    while pending:
        for i in list(pending):
            if residual_shown(pages[i], wants[i]):
                pending.discard(i)
        assert time.time() - t0 < timeout, f"sessions {sorted(pending)} did not show their runs in {timeout} s"
        time.sleep(0.1)


def no_exceptions(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def test_eight_sessions_a_soak_and_stop_on_one_server(folder, server, browser, one_thread):
    base, pid = server
    figures: dict = {"sessions_at_once": SESSIONS, "soak_max_runs": SOAK_RUNS, "soak_max_seconds": SOAK_SECONDS}
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(SESSIONS)]
    pages = [c.new_page() for c in contexts]
    for p in pages:
        p.set_default_timeout(60_000)

    # 1. eight sessions at once, each with its own settings, each seeing only its own results
    queries = [settings_for(i) for i in range(SESSIONS)]
    wants = [expected(folder, q) for q in queries]
    for p, q in zip(pages, queries, strict=True):
        p.goto(f"{base}/?{urlencode(q)}", wait_until="commit")  # all start before any is waited for
    figures["all_sessions_seconds"] = round(wait_all_done(pages, timeout=90), 2)
    for p, want in zip(pages, wants, strict=True):
        assert_own_results(p, want)
        no_exceptions(p)

    # 2. a bounded soak: rounds of new runs in every session at once, each session typing a new seed (each run
    # computed, cached and drawn), until every session shows the residual curve of its own new run
    rss_before = rss(pid)
    runs, t0, rnd = 0, time.time(), 0
    while runs + SESSIONS <= SOAK_RUNS and time.time() - t0 < SOAK_SECONDS:
        rnd += 1
        queries = [settings_for(i, seed=1000 * rnd + i) for i in range(SESSIONS)]
        for p, q in zip(pages, queries, strict=True):
            seed = p.get_by_label("Seed")
            seed.fill(q["seed"])
            seed.press("Enter")
        wants = [expected(folder, q) for q in queries]
        wait_all_showing(pages, wants, timeout=90)
        runs += SESSIONS
    for p, want in zip(pages, wants, strict=True):  # and every curve of the last round is each session's own
        assert_own_results(p, want)
    time.sleep(1.0)
    rss_after = rss(pid)
    figures.update(
        soak_runs=runs,
        soak_rounds=rnd,
        soak_seconds=round(time.time() - t0, 1),
        rss_before_mib=round(rss_before / 2**20, 1),
        rss_after_mib=round(rss_after / 2**20, 1),
        rss_growth_bound_mib=RSS_GROWTH_MAX / 2**20,
    )
    assert runs >= 2 * SESSIONS, f"the soak ran only {runs} runs"
    assert rss_after - rss_before <= RSS_GROWTH_MAX, figures
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "many-users.json").write_text(json.dumps(figures, indent=1) + "\n")

    # 3. Stop ends a long run while the other sessions stay open (its latency is recorded, not bounded), and the
    # session goes on
    t_stop_phase = time.time()
    for c in contexts[1:]:
        c.close()
    page = pages[0]
    long_run = {"checkpoint": "prefix_sums-recursive", "size": "4096", "n": "300", "budget": "600", "seed": "5"}
    page.goto(f"{base}/?{urlencode(long_run)}")
    page.get_by_text("Running: iteration").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    t_click = time.time()
    page.locator(".st-key-explore_stop button").first.click()  # the page's Stop (the header has a Stop of its own)
    page.get_by_text("Stopped at iteration").first.wait_for(timeout=10_000)
    figures["stop_seconds"] = round(time.time() - t_click, 2)
    page.wait_for_function(CHART, arg="Accuracy vs iterations", timeout=20_000)  # redrawn after the progress
    stopped_at = len(page.evaluate(FIGURE, "Accuracy vs iterations")[0]["x"])
    page.wait_for_timeout(1000)
    assert len(page.evaluate(FIGURE, "Accuracy vs iterations")[0]["x"]) == stopped_at < 600
    size = page.get_by_label("Problem size (2..4096)")  # the same session, new settings: it runs to the end
    size.fill("16")
    size.press("Enter")
    page.wait_for_function("() => location.search.includes('size=16')")
    page.get_by_text("Done: 600 iterations").first.wait_for(timeout=60_000)
    no_exceptions(page)
    contexts[0].close()
    figures["stop_phase_seconds"] = round(time.time() - t_stop_phase, 1)
    (ARTIFACTS / "many-users.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures))
    assert torch.get_num_threads() == 1
