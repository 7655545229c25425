"""Errors a user can act on, shown as one line by the CLI (anything else keeps its traceback)."""


class StartupError(RuntimeError):
    """The agent could not start: a port is taken, Kamailio is missing, a worker died, ..."""
