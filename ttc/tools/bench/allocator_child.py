"""One child process of the bench's allocator group: the allocator as $TTC_MALLOC says, then the median seconds of
the bare loop and of probe() on the Explore page's default run; prints one JSON line.

    python -m ttc.tools.bench.allocator_child CHECKPOINT N ITERS REPEATS THREADS
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from ttc.engine.runtime import tune_allocator


def main(argv: list[str]) -> int:
    how = tune_allocator()  # before the model's tensors exist: an allocator is set for the whole process
    import torch

    from ttc.engine.checkpoint import load_checkpoint
    from ttc.tools.bench.common import explore_default_run

    path, n, iters, repeats, threads = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    torch.set_num_threads(threads)
    ck = load_checkpoint(path)
    bare, probed = explore_default_run(ck.model.eval(), ck.task, n, iters, torch.device("cpu"))
    out = {"allocator": how}
    for name, fn in (("bare", bare), ("probe", probed)):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
