"""TTC Lab, in three layers with dependencies pointing down only:

- `ttc.tools`  the command line (`python -m ttc`), the benchmark and the report;
- `ttc.app`    the dashboard's support: URL settings, the checkpoint catalog, traces, figures, export;
- `ttc.engine` instrumented runs (probe), the one evaluation and its curve, checkpoints, training, memory,
               the one cost model, plugin loading. It imports neither Streamlit, plotly nor the layers above.

`views/` (Streamlit) sit above `ttc.app`; `models/` and `tasks/` sit below the engine.
"""

__all__ = ["load", "run", "analyze", "memory", "Run"]


def __getattr__(name: str):
    """The notebook API (ttc.api), imported on first use: `import ttc` stays light (no Streamlit, no plotly)."""
    if name in __all__:
        from ttc import api

        return getattr(api, name)
    raise AttributeError(f"module 'ttc' has no attribute {name!r}")
