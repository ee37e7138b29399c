"""Refusing a request after schema validation, in the same shape as schema validation.

BentoML turns a pydantic ``ValidationError`` raised while handling a request into a 400 with
``{"error": ..., "detail": [{"type", "loc", "msg"}, ...]}``. Checks that need more than one field
(a history row for another customer, a signup after ``as_of``) raise the same error, so a client
handles one error format whatever the check was.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

_NO_BRACES = str.maketrans("{}", "()")


def invalid_request(title: str, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
    """Raise a ``ValidationError`` with one entry per ``(location, message)``."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(
                "invalid_request", message.replace("{", "(").replace("}", ")")
            ),
            loc=location,
            input=None,
        )
        for location, message in problems
    ]
    raise ValidationError.from_exception_data(title, details)
