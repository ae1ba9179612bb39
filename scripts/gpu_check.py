"""Check the CUDA paths the dashboard relies on and print their readings.

    python scripts/gpu_check.py [--checkpoints DIR] [--size N] [--iters K]

For each checkpoint (the folder's, or tiny random ones when it holds none):
- `python -m ttc eval --device cuda --json`: accuracy, NFE and seconds on the GPU;
- the Explore page's run (ttc.app.trace.LiveRun) on CUDA: its memory readings must be torch.cuda's
  (memory_kind "cuda_allocated"), per iteration;
- for DEQs, `python -m ttc memory --device cuda --json` and the Memory page's measurement
  (ttc.app.memory_sweep.measure_one): saved bytes and the CUDA peak above baseline, per backward mode.
Exits 1 when CUDA is missing or a reading is not a CUDA one. `--device cpu` runs the same steps on the
CPU (a dry run of this script where no GPU is at hand).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_cli(*args: str) -> object:
    r = subprocess.run([sys.executable, "-m", "ttc", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"python -m ttc {' '.join(args)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def mib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.2f} MiB"


def main() -> int:
    import torch

    from ttc.app import catalog
    from ttc.app.memory_sweep import measure_one
    from ttc.app.settings import sanitize
    from ttc.app.trace import compute_trace

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=None, help="checkpoint folder (default: $TTC_CHECKPOINTS or checkpoints/)")
    ap.add_argument("--size", type=int, default=None, help="problem size (default: the dashboard's for the task)")
    ap.add_argument("--iters", type=int, default=50, help="iteration budget")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run of the same steps")
    a = ap.parse_args()
    dev, cuda = a.device, a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: CUDA is not available (torch.cuda.is_available() is False)")
        return 1
    print(f"torch {torch.__version__}, " + (f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}" if cuda
                                            else "CPU dry run"))
    folder = Path(a.checkpoints) if a.checkpoints else catalog.checkpoint_folder()
    tmp = None
    if not catalog.file_stamps(folder):
        from tests.dashboard_checkpoints import make_checkpoints

        tmp = tempfile.TemporaryDirectory()
        folder = Path(tmp.name)
        make_checkpoints(folder)
        print(f"no checkpoints found; using tiny random ones in {folder}")
    entries = [catalog.load_file_entry(s) for s in catalog.file_stamps(folder)]
    ok = True
    for e in entries:
        if not e.ok:
            print(f"{e.name}: invalid ({e.error})")
            continue
        raw = {"checkpoint": e.name, "budget": str(a.iters), "n": "100"}
        if a.size:
            raw["size"] = str(a.size)
        s, _ = sanitize(raw, entries, device=dev)
        ev = run_cli("eval", "--checkpoint", e.path, "--size", str(s.size), "--iters", str(a.iters), "--n", str(s.n),
                     "--device", dev, "--json")
        print(f"\n{e.name} ({e.family}): {s.task} size {s.size}, n {s.n}, budget {a.iters}")
        print(f"  eval on {ev['device']}: best accuracy {ev['best_accuracy']:.3f} at {ev['best_iter']}, final "
              f"{ev['final_accuracy']:.3f}, nfe {ev['nfe']}, {ev['seconds']:.3f} s")
        t = compute_trace(e.ck, s)
        m = t.summary()
        print(f"  dashboard run: memory_kind {t.memory_kind}, memory per iteration {mib(int(t.memory_bytes.min()))} "
              f"to {mib(int(t.memory_bytes.max()))}, {m['iters_per_second']:.0f} iterations/s, "
              f"accuracy {m['final_accuracy']:.3f} (eval {ev['final_accuracy']:.3f})")
        ok &= t.memory_kind == ("cuda_allocated" if cuda else "cpu_tensor_bytes")
        if e.ck.model.has_solver:
            rows = run_cli("memory", "--checkpoint", e.path, "--size", str(s.size), "--iters", "10,50,200",
                           "--device", dev, "--json")
            for r in rows:
                print(f"  memory cli {r['mode']:>8} {r['iters']:>4} iters: saved {mib(r['saved_bytes'])}, "
                      f"CUDA peak {mib(r['peak_bytes'])}, {r['seconds']:.3f} s")
            for mode in ("unrolled", "implicit", "jfb"):
                r = measure_one(e.ck, s.size, 8, 0, mode, 50, dev)
                print(f"  memory page {mode:>8}   50 iters: saved {mib(r['saved_bytes'])}, CUDA peak "
                      f"{mib(r['peak_bytes'])}")
                ok &= (r["peak_bytes"] is not None) == cuda
    if tmp:
        tmp.cleanup()
    kind = "CUDA" if cuda else "CPU"
    print(f"\nall readings are {kind} readings" if ok else f"\nerror: some readings were not {kind} readings")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
