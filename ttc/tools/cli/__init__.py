"""`python -m ttc`: one module per command (data, eval, train, measure, memory, analyze, bench, report), what they
share in `common`, the parser and entry point in `main`.

Bad input (unknown names, out-of-range values, malformed files) ends with one line on stderr,
`error: ...`, and exit status 2; never a traceback.
"""

from ttc.engine.limits import MAX_COST as MAX_COST
from ttc.engine.limits import run_cost as run_cost
from ttc.tools.cli.common import USER_ERRORS as USER_ERRORS
from ttc.tools.cli.common import Parser as Parser
from ttc.tools.cli.common import UsageError as UsageError
from ttc.tools.cli.main import build_parser as build_parser
from ttc.tools.cli.main import main as main
