"""The engine: runs, evaluation, checkpoints, training, memory and cost; no Streamlit, no plotly, no app."""
