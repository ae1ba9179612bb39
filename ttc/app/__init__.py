"""Dashboard support: URL settings, the checkpoint catalog, traces, figures and export (no Streamlit here)."""
