"""The one exception type that means "the user asked for something that cannot be done"."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake in the user's input (file, name, option). The CLI prints its message on one line
    and exits with code 2; library callers can catch it like any exception."""
