"""The README's dashboard screenshots, taken in the system Chromium from `streamlit run app.py` on the shipped zoo.

    python scripts/screenshots.py            # writes docs/dashboard.png, docs/fixed_points.png and docs/ebm.png
    python scripts/screenshots.py --only ebm # just docs/ebm.png

Explore: prefix_sums-recursive on 256-bit problems, pinned, with prefix_sums-memory overlaid (bands, the training
depth, the front of the computation, the memory's read/write map). Fixed points: prefix_sums-deq at 32 bits.
EBM: prefix_sums-ebm on 128-bit problems (its energy panel and the relaxed answer forming in the inspector).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_support import chromium, streamlit_server  # noqa: E402

EXPLORE = "task=prefix_sums&checkpoint=prefix_sums-recursive&size=256&n=100&budget=200&seed=0"
FIXED = "fixed-points?task=prefix_sums&checkpoint=prefix_sums-deq&size=32&n=100&budget=60&seed=0&starts=5"
EBM = "task=prefix_sums&checkpoint=prefix_sums-ebm&size=128&n=100&budget=150&seed=0"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python scripts/screenshots.py",
        description="Take the README's dashboard screenshots in the system Chromium from `streamlit run app.py` on "
                    "the shipped checkpoints (a few minutes; it overwrites the PNG files in --out).")
    p.add_argument("--only", choices=["ebm"], default=None, help="just the EBM screenshot (ebm.png)")
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder the PNG files are written to (default: docs/)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)  # --help prints and exits here, before any server or file is touched
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    env = {"TTC_THREADS": "2", "TTC_AUTO_RUN_SECONDS": "600"}  # the screenshot's runs start without a Run click
    only_ebm = a.only == "ebm"
    with streamlit_server(ROOT / "checkpoints", log, env) as (base, _), chromium() as b:
        page = b.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        page.set_default_timeout(180_000)
        tall = b.new_context(viewport={"width": 1500, "height": 2500}).new_page()  # down to the inspector
        tall.set_default_timeout(180_000)
        tall.goto(f"{base}/?{EBM}")
        tall.get_by_text("Done:").first.wait_for()
        tall.get_by_text("Relaxed answer y").first.wait_for()
        tall.wait_for_timeout(3000)
        tall.screenshot(path=str(out / "ebm.png"), full_page=True)
        if only_ebm:
            print(f"wrote {out / 'ebm.png'}")
            return 0
        page.goto(f"{base}/?{EXPLORE}")
        page.get_by_text("Done:").first.wait_for()
        page.locator(".st-key-explore_pin button").first.click()
        page.get_by_text("Overlaid:").first.wait_for()
        box = page.get_by_label("Checkpoint")
        box.click()
        page.get_by_role("option", name="prefix_sums-memory", exact=True).click()
        page.get_by_text("Running: iteration").first.wait_for()  # the new run started (the old "Done:" is gone)
        page.wait_for_function("() => document.body.innerText.includes('Done:') && "
                               "!document.body.innerText.includes('Running: iteration')")
        page.wait_for_timeout(3000)  # the last charts paint
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        page.goto(f"{base}/{FIXED}")
        page.get_by_text("Halting and breadth").first.wait_for()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "fixed_points.png"), full_page=True)
    print(f"wrote {out / 'ebm.png'}, {out / 'dashboard.png'} and {out / 'fixed_points.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
