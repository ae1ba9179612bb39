"""TTC Lab dashboard: `streamlit run app.py`. Navigation over the pages in views/ (st.navigation only).

The pages live in views/, not pages/: Streamlit runs a folder named pages/ as its old file-based multipage app
whenever it sees one (a page then runs without this file, and Streamlit's AppTest ran every page so, which
swallowed button presses); st.navigation here is the one navigation."""

import os

import streamlit as st
import torch

from ttc.app.server_log import quiet_stale_timer_ticks
from ttc.app.settings import dashboard_threads
from ttc.engine.runtime import PluginError, load_plugins, tune_allocator

quiet_stale_timer_ticks()  # a stale tick of Explore's first-page timer is not worth a log line (see there)
tune_allocator()  # freed tensors' memory stays in the process: no page faults every iteration ($TTC_MALLOC=0: off)
threads = dashboard_threads(os.environ.get("TTC_THREADS"))
if torch.get_num_threads() != threads:
    torch.set_num_threads(threads)
st.set_page_config(page_title="TTC Lab", page_icon="🔁", layout="wide")
# a sidebar wide enough for the longest checkpoint name (prefix_sums-recursive-transformer) in its select box
st.html("<style>section[data-testid='stSidebar'] {min-width: 22rem;}</style>")
try:
    load_plugins()  # $TTC_PLUGINS: a user's own families, tasks and solvers appear on every page
except PluginError as e:
    st.error(f"{e}. The app runs without it; fix the module or TTC_PLUGINS and reload.")

PAGES = [
    st.Page("views/explore.py", title="Explore", icon=":material/monitoring:", default=True),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/memory.py", title="Memory", icon=":material/memory:"),
    st.Page("views/analysis.py", title="Fixed points", icon=":material/all_inclusive:", url_path="fixed-points"),
    st.Page("views/checkpoints.py", title="Checkpoints", icon=":material/inventory_2:"),
]

st.navigation(PAGES).run()
