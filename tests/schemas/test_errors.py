"""schemas.errors.describe_error: one line, the type first, the chosen line of a multi-line message."""

from __future__ import annotations

from schemas.errors import describe_error


def test_one_line_with_the_exception_type() -> None:
    assert describe_error(ValueError("bad box")) == "ValueError: bad box"
    assert describe_error(OSError()) == "OSError: no detail"


def test_multi_line_messages_give_the_first_or_the_last_line() -> None:
    exc = RuntimeError("\n  first line \nmiddle\nlast: the cause\n")
    assert describe_error(exc) == "RuntimeError: first line"
    assert describe_error(exc, last_line=True) == "RuntimeError: last: the cause"


def test_the_line_is_cut_at_the_limit() -> None:
    assert describe_error(KeyError("x" * 1000), limit=20) == "KeyError: 'xxxxxxxxx"
    assert len(describe_error(ValueError("y" * 1000))) == 500
