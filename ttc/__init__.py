"""TTC Lab engine: instrumented runs, checkpoints, training, memory, figures and the CLI."""
