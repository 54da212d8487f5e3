"""The one exception users see: a one-line message naming what is wrong and how to fix it."""


class ReverieError(Exception):
    """A user-facing error. The CLI prints `reverie: <message>` and exits with code 2."""
