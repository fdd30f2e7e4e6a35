"""Exceptions as the one line a user reads: the format of a row's `error` column, of a failed
shard's cause in the run record and summary, and of the teachers' checkpoint errors. It sits in
`schemas/`, below `pipeline/` and `teacher/`, so that both word their errors by the same rule."""

from __future__ import annotations


def describe_error(exc: BaseException, *, last_line: bool = False, limit: int = 500) -> str:
    """`ExceptionType: message` on one line, at most `limit` characters.

    A multi-line message gives its first non-empty line, or its last with `last_line=True`
    (tracebacks relayed by Ray and torch end with the cause). An empty message reads "no detail".
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = (lines[-1] if last_line else lines[0]) if lines else "no detail"
    return f"{type(exc).__name__}: {text}"[:limit]
