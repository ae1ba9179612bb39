"""Checkpoints: the model zoo as a table of model cards, and an upload of a user's own checkpoint that is
validated like the shipped ones and then offered on every page for this session."""

import pandas as pd
import streamlit as st

from ttc.app.catalog import card_row, checkpoint_folder
from views._common import add_upload, entries, upload_error

st.title("Checkpoints")
st.caption(f"Shipped checkpoints are read from {checkpoint_folder()}/ (set TTC_CHECKPOINTS to use another folder); "
           "uploads stay in this browser session only.")
zoo = st.container()  # filled after the upload below is handled, so a new upload is listed at once

st.subheader("Upload a checkpoint")
up = st.file_uploader("A TTC Lab .safetensors checkpoint (weights with their metadata; pickles are never loaded)",
                      type=["safetensors"], key="upload")
if up is not None:
    seen = st.session_state.setdefault("upload_results", {})
    if up.file_id not in seen:  # validate each uploaded file once
        try:
            e = add_upload(up.name, up.getvalue())
            seen[up.file_id] = ("ok", f"{up.name} is valid: {e.task} {e.family} {e.ck.arch}, "
                                      f"{e.ck.model.num_params():,} parameters. It is listed as {e.name!r} on every "
                                      "page for this session.")
        except Exception as err:  # a hostile file must end in a message, never in a traceback
            seen[up.file_id] = ("error", f"{up.name} was refused: {upload_error(err)}")
    status, message = seen[up.file_id]
    (st.success if status == "ok" else st.error)(message)

ents = entries()
with zoo:
    table = pd.DataFrame([card_row(e) for e in ents])
    if table.empty:
        st.info(f"No checkpoints in {checkpoint_folder()}/ yet. Train one with python -m ttc train, or upload one "
                "below.")
    else:
        # every row without scrolling and no empty row under them (35 px a row, the header one of them); the name
        # stays in view while the table scrolls sideways, and the accuracies get the room to be read
        columns = {"name": st.column_config.TextColumn(width="medium", pinned=True),
                   "accuracies (size@iters: acc)": st.column_config.TextColumn(width="large"),
                   "best val acc": st.column_config.NumberColumn(format="%.3f")}
        st.dataframe(table, hide_index=True, key="zoo", width="stretch", height=35 * (len(table) + 1) + 3,
                     column_config=columns)
        st.download_button("Download the table (CSV)", table.to_csv(index=False), "ttc-checkpoints.csv", "text/csv",
                           key="zoo-csv", on_click="ignore")

valid = [e for e in ents if e.ok]
if valid:
    st.subheader("Model card")
    name = st.selectbox("Checkpoint", [e.name for e in valid], key="card_checkpoint")
    st.json(next(e for e in valid if e.name == name).ck.card, expanded=1)
