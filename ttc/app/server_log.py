"""What the dashboard's server log leaves out, and why."""

import logging

_APP_SESSION_LOG = "streamlit.runtime.app_session"


class StaleTimerTicks(logging.Filter):
    """Explore's first page arms a one-second browser timer (a fragment's run_every) that reruns the whole page;
    a tick the browser sent before it heard of that rerun reaches a server that has dropped the fragment, and
    Streamlit discards it, logging one INFO line each time. Expected and harmless: kept out of the server log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not exist anymore" not in record.getMessage()


def quiet_stale_timer_ticks() -> None:
    """Install the filter once per process (app.py runs on every rerun)."""
    log = logging.getLogger(_APP_SESSION_LOG)
    if not any(isinstance(f, StaleTimerTicks) for f in log.filters):
        log.addFilter(StaleTimerTicks())
