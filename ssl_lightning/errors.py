"""User-facing errors: a mistake in the input is reported as one line with exit code 2, no traceback."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UserError(Exception):
    """Raised for bad input the user can fix (config values, data folders, files).

    The message must say what is wrong and how to fix it, in one line.
    """


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors follow the same rule: `error: ...` in one line, exit code 2 (the stock parser
    prints the wrapped usage block first, several lines for one mistake)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")
