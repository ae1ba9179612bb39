"""Benchmarks (`python -m ttc bench`): what instrumentation, solvers, backward modes, problem size, precision and
the dashboard cost, measured side by side in one process.

Every entry names what it compares and gives the ratio's min / median / max over repeats: both sides run
interleaved on the same machine, so a busy or slow machine moves them alike, and the absolute numbers
(seconds, bytes, iterations per second) come alongside. Problems come from explicit seeds. With no DEQ
checkpoint in the folder, the DEQ entries run on a randomly initialised DEQ of the zoo's prefix-sums
shape and say so.

One module per group or two (overhead, deq, speed, dashboard, precision), what they share in `common`, the whole
run and its table in `run`.
"""

from ttc.engine.zoo import scaled_size as scaled_size
from ttc.engine.zoo import training_size as training_size
from ttc.tools.bench.common import GROUPS as GROUPS
from ttc.tools.bench.common import BenchConfig as BenchConfig
from ttc.tools.bench.common import _timed as _timed
from ttc.tools.bench.common import bench_config as bench_config
from ttc.tools.bench.common import entry as entry
from ttc.tools.bench.common import explore_default_run as explore_default_run
from ttc.tools.bench.common import skipped as skipped
from ttc.tools.bench.common import spread as spread
from ttc.tools.bench.run import fmt_ratio as fmt_ratio
from ttc.tools.bench.run import format_table as format_table
from ttc.tools.bench.run import headline as headline
from ttc.tools.bench.run import run_bench as run_bench
