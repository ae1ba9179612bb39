import sys

from ttc.engine.runtime import PluginError, load_plugins

try:
    load_plugins()  # $TTC_PLUGINS: a user's families, tasks and solvers, before the parser lists the known names
except PluginError as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)

from ttc.tools.cli import main  # noqa: E402 (after the plugins, so choices and registries include theirs)

sys.exit(main())
