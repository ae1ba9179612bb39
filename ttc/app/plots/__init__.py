"""Plotly figure builders for the dashboard (and for exports and the report): traces in, `go.Figure` out.

Every builder is pure: the same inputs give the same figure, so the app, the exports and the tests see the same
data. Curves are labelled with the checkpoint name; colours follow the family. One module per kind: style
(colours, axes, legends, bands), curves, problems (one problem as its task renders it), family (its series and
maps), analysis.
"""

from ttc.app.plots.analysis import breadth_figure as breadth_figure
from ttc.app.plots.analysis import difficulty_figure as difficulty_figure
from ttc.app.plots.analysis import difficulty_fit as difficulty_fit
from ttc.app.plots.analysis import distances_figure as distances_figure
from ttc.app.plots.analysis import front_figure as front_figure
from ttc.app.plots.analysis import halting_figure as halting_figure
from ttc.app.plots.analysis import settled_figure as settled_figure
from ttc.app.plots.analysis import starts_figure as starts_figure
from ttc.app.plots.curves import LiveFigure as LiveFigure
from ttc.app.plots.curves import accuracy_by_difficulty_figure as accuracy_by_difficulty_figure
from ttc.app.plots.curves import accuracy_figure as accuracy_figure
from ttc.app.plots.curves import heatmap_figure as heatmap_figure
from ttc.app.plots.curves import live_figure as live_figure
from ttc.app.plots.curves import memory_figure as memory_figure
from ttc.app.plots.curves import memory_modes_figure as memory_modes_figure
from ttc.app.plots.curves import residual_figure as residual_figure
from ttc.app.plots.family import MAP_FIGURES as MAP_FIGURES
from ttc.app.plots.family import answer_figure as answer_figure
from ttc.app.plots.family import map_views as map_views
from ttc.app.plots.family import memory_access_figure as memory_access_figure
from ttc.app.plots.family import series_figure as series_figure
from ttc.app.plots.problems import confidence_figure as confidence_figure
from ttc.app.plots.problems import example_figure as example_figure
from ttc.app.plots.style import LEGEND_PAD_PX as LEGEND_PAD_PX
from ttc.app.plots.style import LEGEND_ROW_PX as LEGEND_ROW_PX
from ttc.app.plots.style import LOG_AXIS as LOG_AXIS
from ttc.app.plots.style import LOG_SMALL as LOG_SMALL
from ttc.app.plots.style import MEMORY_LABELS as MEMORY_LABELS
from ttc.app.plots.style import Labelled as Labelled
from ttc.app.plots.style import _style as _style
from ttc.app.plots.style import add_band as add_band
from ttc.app.plots.style import add_budget_line as add_budget_line
from ttc.app.plots.style import add_wilson_band as add_wilson_band
from ttc.app.plots.style import count_dtick as count_dtick
from ttc.app.plots.style import discrete_scale as discrete_scale
from ttc.app.plots.style import family_color as family_color
from ttc.app.plots.style import fit_legend as fit_legend
from ttc.app.plots.style import legend_entries as legend_entries
from ttc.app.plots.style import lighter as lighter
from ttc.app.plots.style import mode_style as mode_style
from ttc.app.plots.style import per_cell as per_cell
from ttc.app.plots.style import rgb_hex as rgb_hex
from ttc.app.plots.style import series_label as series_label
