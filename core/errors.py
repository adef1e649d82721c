"""The base of every error whose message is meant for the user as it stands."""

from __future__ import annotations


class PitstopError(Exception):
    """A failure the user can fix; its message is one clear sentence naming what to fix.

    The CLI prints it without a traceback and exits non-zero. It must never contain a
    secret.
    """
