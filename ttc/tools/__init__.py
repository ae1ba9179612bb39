"""Tools: the command line (python -m ttc), the benchmark and the report."""
