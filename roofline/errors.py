"""One exception type for every bad input the library can detect.

A `SpecError` carries a one-line message that names the offending field and
the fix; the CLI prints it and exits non-zero, the dashboard shows it, and
notebooks see an ordinary `ValueError` subclass.
"""

from __future__ import annotations


class SpecError(ValueError):
    """Bad input: names the field, the value and what would be accepted."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.msg = message
        super().__init__(f"{field}: {message}")
