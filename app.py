"""TTC Lab dashboard (placeholder until the pages land): lists the shipped checkpoints."""

import streamlit as st

from ttc.checkpoint import list_checkpoints

st.title("TTC Lab")
for p in list_checkpoints():
    st.write(p.stem)
