"""
Findings (`python -m ttc report --out DIR`): what test-time compute buys each family as problems grow.

For each task with checkpoints: exact-match accuracy against iterations for every checkpoint at the
training size, 4x and 16x (or the largest size whose run fits the cost cap); the iterations needed to
reach the best accuracy as a function of problem size (how needed compute grows with size: the
algorithmic-complexity question); residual curves; and the DEQ memory table. Figures go out as PNG and
SVG (kaleido with a Chromium, else the summary says why) and HTML, the numbers as results.json, and
summary.md puts them together.

Costs are capped: a run's problems are cut (down to a floor) so that problems x iterations x
multiply-accumulates per problem-iteration stays under a cap, and a size whose run would still exceed
it is replaced by the largest affordable one. Runs end early once every sample's state has stopped
changing (relative change < 1e-4; a DEQ's solver tolerance) or once every problem has been solved for as
many iterations again as it took. Every such choice is written into the summary.

One module per part: plan (sizes, budgets, the cost cap), curves (one run), figures, measures (memory, difficulty,
analysis tables), summary (summary.md), run (the whole report and its rendering).
"""

from ttc.app import export as export
from ttc.tools.report.curves import Curve as Curve
from ttc.tools.report.curves import scaling_fit as scaling_fit
from ttc.tools.report.figures import write_figure as write_figure
from ttc.tools.report.plan import FORMATS as FORMATS
from ttc.tools.report.plan import growth as growth
from ttc.tools.report.plan import iteration_cost as iteration_cost
from ttc.tools.report.plan import looped_budget as looped_budget
from ttc.tools.report.plan import plan_run as plan_run
from ttc.tools.report.plan import report_config as report_config
from ttc.tools.report.plan import report_sizes as report_sizes
from ttc.tools.report.run import merge_results as merge_results
from ttc.tools.report.run import read_results as read_results
from ttc.tools.report.run import render as render
from ttc.tools.report.run import run_report as run_report
from ttc.tools.report.summary import longer_lines as longer_lines
from ttc.tools.report.summary import longer_verdict as longer_verdict
