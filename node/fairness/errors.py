"""The one error type of the fairness rooms: a bad input, with a stable code."""

from __future__ import annotations


class FairnessError(ValueError):
    """Malformed or invalid input (a point, a proof, a message, an envelope).

    `code` is stable and machine-readable; `member` names the committee member (1-based
    index) whose message it was, when the error is theirs, so the caller can penalize
    the right peer."""

    def __init__(self, code: str, message: str, member: int | None = None) -> None:
        who = f" (member {member})" if member is not None else ""
        super().__init__(f"{code}: {message}{who}")
        self.code = code
        self.message = message
        self.member = member
