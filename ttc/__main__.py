import sys

from ttc.engine.runtime import PluginError, load_plugins, tune_allocator

tune_allocator()  # freed tensors' memory stays in the process: no page faults every iteration ($TTC_MALLOC=0: off)
try:
    load_plugins()  # $TTC_PLUGINS: a user's families, tasks and solvers, before the parser lists the known names
except PluginError as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)

from ttc.tools.cli import main  # noqa: E402 (after the plugins, so choices and registries include theirs)

sys.exit(main())
