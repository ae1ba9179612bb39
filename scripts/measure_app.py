"""Measure the dashboard in a real browser: cold start and warm update times on Explore.

    python scripts/measure_app.py [--checkpoints DIR] [--repeats 5] [--json]

- cold start: from launching `streamlit run app.py` to the first chart with data on Explore (default
  settings, a fresh server and a fresh browser page), with the server's ready time and the time to the
  end of the first run beside it;
- warm update: from a settings change on Explore (the budget slider moved one step with the keyboard)
  to the first chart showing the new settings' data, for settings never run before (computed live) and
  for settings run before (drawn from the trace cache);
- the live frame rate the page reports for its first run;
- a long live run (the default view at size 128, 50 problems, budget 400: about ten seconds): its frame rate
  and the share of the browser's animation frames in which the chart was missing (Streamlit gives a plotly chart
  whose data changed a new element, so a frame can fall between the old one's removal and the new one's drawing:
  flicker).

Chromium is /usr/bin/chromium (or $BROWSER_PATH). Times are wall clock on this machine: close other
heavy work first, and say which machine the numbers came from.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]

# signature of the accuracy curve on Explore (live three-panel figure or final chart): its length
CURVE = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = gd.layout && gd.layout.title && gd.layout.title.text;
    if (t && (t.includes('Running: iteration') || t.includes('Accuracy vs iterations'))
        && gd.querySelector('.scatterlayer .trace')) return gd.data[0].x.length;
  }
  return -1;
}"""

# resolves with the milliseconds from the next keydown to the first frame whose curve differs from `before`
WATCH_CHANGE = """before => { window.__change = new Promise(resolve => {
  let t0 = null;
  window.addEventListener('keydown', () => { if (t0 === null) t0 = performance.now(); }, {capture: true, once: true});
  const curve = CURVE_FN;
  const tick = () => {
    const n = curve();
    if (t0 !== null && n > 0 && n !== before) resolve(performance.now() - t0); else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}); return 1; }""".replace("CURVE_FN", CURVE)

# installed before the page loads: from the first live figure to the "Done:" message, counts the animation frames
# and those in which no accuracy curve was drawn; window.__live resolves with {frames, missing}
WATCH_LIVE = """window.__live = new Promise(resolve => {
  let frames = 0, missing = 0, started = false;
  const curve = CURVE_FN;
  const tick = () => {
    const n = curve();
    if (n > 0) started = true;
    if (started) {
      frames++;
      if (n < 0) missing++;
      if (n > 0 && document.body.innerText.includes('Done:')) { resolve({frames, missing}); return; }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
});""".replace("CURVE_FN", CURVE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"error: timed out after {timeout:.0f}s waiting for {what}")


def live_rate(done: str) -> float | None:
    """The frames per second a "Done: ... Drawn live at X frames/s." message reports (None for a short run)."""
    if "Drawn live at" not in done:
        return None
    return float(done.split("Drawn live at ")[1].split(" frames/s")[0])


def healthy(base: str) -> bool:
    try:
        return urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok"
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: $TTC_CHECKPOINTS or checkpoints/)")
    ap.add_argument("--repeats", type=int, default=5, help="warm measurements of each kind")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the server (TTC_THREADS; default: the app's choice, half the CPUs, 1..4)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    chromium = os.environ.get("BROWSER_PATH", "/usr/bin/chromium")
    if not Path(chromium).exists():
        raise SystemExit(f"error: no Chromium at {chromium}; install chromium or set BROWSER_PATH")
    from playwright.sync_api import sync_playwright

    env = dict(os.environ)
    if a.checkpoints:
        env["TTC_CHECKPOINTS"] = a.checkpoints
    if a.threads:
        env["TTC_THREADS"] = str(a.threads)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out: dict = {"checkpoints": env.get("TTC_CHECKPOINTS", "checkpoints"), "machine": f"{os.cpu_count()} CPUs",
                 "threads": env.get("TTC_THREADS", "default"),
                 "load_average": os.getloadavg()[0]}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1800})
        page.add_init_script(WATCH_LIVE)
        t_launch = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: healthy(base), 60, "the server")
            out["server_ready_s"] = time.perf_counter() - t_launch
            page.goto(base)
            wait_for(lambda: page.evaluate(CURVE) > 0, 120, "the first chart")
            out["cold_first_chart_s"] = time.perf_counter() - t_launch
            page.get_by_text("Done:").first.wait_for(timeout=300_000)
            out["cold_first_run_done_s"] = time.perf_counter() - t_launch
            rate = live_rate(page.get_by_text("Done:").first.inner_text())
            if rate is not None:
                out["live_frames_per_s"] = rate
            out["default_view"] = page.url.split("?", 1)[-1]
            slider = page.get_by_test_id("stSidebar").get_by_role("slider").first
            fresh, cached = [], []
            for i in range(a.repeats):
                for key, into in (("ArrowLeft", fresh), ("ArrowRight", cached)):
                    page.evaluate(WATCH_CHANGE, page.evaluate(CURVE))
                    slider.focus()
                    page.keyboard.press(key)
                    into.append(page.evaluate("() => window.__change") / 1000)
                    page.get_by_text("Done:").first.wait_for(timeout=300_000)
                    page.wait_for_timeout(300)
                if i + 1 < a.repeats:  # move one step further down so the next "fresh" budget is new again
                    slider.focus()
                    page.keyboard.press("ArrowLeft")
                    page.get_by_text("Done:").first.wait_for(timeout=300_000)
                    page.wait_for_timeout(300)
            out["warm_new_settings_s"] = {"median": statistics.median(fresh), "all": fresh}
            out["warm_cached_settings_s"] = {"median": statistics.median(cached), "all": cached}
            long_view = {**dict(parse_qsl(out["default_view"])), "size": "128", "n": "50", "budget": "400", "seed": "1"}
            page.goto(f"{base}/?{urlencode(long_view)}")  # the watcher reinstalls
            page.wait_for_function("() => /Waiting: this run is estimated|Running: iteration|Done:/"
                                   ".test(document.body.innerText)", timeout=120_000)
            if "Waiting: this run" in page.inner_text("body"):  # estimated above TTC_AUTO_RUN_SECONDS
                page.get_by_role("button", name="Run", exact=True).click()
            out["long_run"] = page.evaluate("() => window.__live")
            rate = live_rate(page.get_by_text("Done:").first.inner_text())
            if rate is not None:
                out["long_run"]["frames_per_s"] = rate
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            browser.close()
    if a.json:
        print(json.dumps(out))
    else:
        print(f"checkpoints {out['checkpoints']}; {out['machine']}, torch threads {out['threads']}, load average "
              f"{out['load_average']:.1f}")
        print(f"default view: {out['default_view']}")
        print(f"cold start: server ready {out['server_ready_s']:.2f} s, first chart {out['cold_first_chart_s']:.2f} s, "
              f"first run done {out['cold_first_run_done_s']:.2f} s after launch")
        if "live_frames_per_s" in out:
            print(f"first run drawn live at {out['live_frames_per_s']:.1f} frames/s")
        for name, key in (("new settings (computed live)", "warm_new_settings_s"),
                          ("settings run before (cache)", "warm_cached_settings_s")):
            v = out[key]
            print(f"warm, {name}: first updated chart after {v['median']:.3f} s (median of "
                  f"{', '.join(f'{x:.3f}' for x in v['all'])})")
        lr = out["long_run"]
        rate = f"{lr['frames_per_s']:.1f} frames/s" if "frames_per_s" in lr else "no frame rate on the page"
        print(f"long live run ({rate}): the chart was missing in {lr['missing']} of "
              f"the browser's {lr['frames']} animation frames ({lr['missing'] / max(1, lr['frames']):.1%}: a frame "
              "between two drawings of the chart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
