"""The CLI's one error style: ``error: <what went wrong>`` on stderr and a documented exit code.

Every command raises ``CliError`` (or one of the library errors mapped in ``cli.main``) for a
problem the user can fix; none of them prints a traceback. The codes are listed in the README
and in ``python -m main_backend --help``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``python -m main_backend`` returns."""

    OK = 0
    #: The command ran and something it did failed (a backend did not start, pip failed, a bad bundle).
    FAILED = 1
    #: Bad arguments, an unknown backend, a config file that is missing or invalid.
    USAGE = 2
    #: No hub answers at the hub's address (start one with ``make run``).
    NO_HUB = 3
    #: A hub answers but refused the API key (set ``HUB_API_KEY`` / ``HUB_ADMIN_KEY``).
    KEY_REFUSED = 4
    #: Stopped with Ctrl-C.
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 the command failed; 2 bad arguments, unknown backend or bad config; "
    "3 no hub answers; 4 the hub refused the API key; 130 interrupted"
)


class CliError(Exception):
    """A problem the user can fix: printed as ``error: <message>``, exit with ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
