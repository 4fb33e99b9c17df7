"""What every adapter shares: the error type that says whether retrying can help."""

from __future__ import annotations


class AdapterError(Exception):
    """A failure inside a codec or transport.

    ``permanent`` tells the caller whether trying again can succeed: a malformed message or a 400
    from a destination is permanent; a refused connection or a 503 is not.
    """

    permanent: bool = True

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent

    @property
    def reason(self) -> str:
        return str(self)
