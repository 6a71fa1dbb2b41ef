"""Which characters the service accepts in text it stores, decided once for the API and the
webhook inbox.

PostgreSQL refuses NUL (U+0000) in `text` and `jsonb`, and a lone surrogate (U+D800 to U+DFFF,
which JSON's `\\ud800` escapes and undecodable bytes in a URL or header produce) cannot be
encoded for it at all: either would end in a 500, or fail every row of a group commit. Beyond
what PostgreSQL refuses, control characters are never part of a real value: they are terminal
escapes, log-line splitters and truncation tricks. So:

- identifiers (ids, references, payment methods, providers, path and query parameters) hold
  no control character at all: none of C0 (U+0000 to U+001F), nor DEL (U+007F);
- free text (descriptions, metadata values, failure messages) may also hold TAB, LF and CR,
  which people do type;
- neither may hold a lone surrogate.

C1 controls (U+0080 to U+009F) are left alone: PostgreSQL stores them, and they appear in text
that was decoded with the wrong code page rather than in attacks on us."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr

from gateway import limits

_REFUSED_IN_IDENTIFIERS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_REFUSED_IN_FREE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def refused_character(value: str, *, free_text: bool = False) -> str | None:
    """The first character `value` may not hold, as `U+XXXX` (never the value itself: it may be
    a card number or a key), or None when every character is allowed."""
    pattern = _REFUSED_IN_FREE_TEXT if free_text else _REFUSED_IN_IDENTIFIERS
    found = pattern.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def refusal(character: str) -> str:
    """Why a value holding `character` is refused, to follow the field's name."""
    return (
        f"contains a character that is not allowed ({character}): control characters and "
        "unpaired surrogates are refused"
    )


def _identifier_characters(value: str) -> str:
    character = refused_character(value)
    if character is not None:
        raise ValueError(refusal(character))
    return value


IDENTIFIER_CHARACTERS = AfterValidator(_identifier_characters)
"""Annotate a `str` field with it to hold the field to the identifiers' characters."""

Identifier = Annotated[
    StrictStr, Field(min_length=1, max_length=limits.ID_LENGTH_MAX), IDENTIFIER_CHARACTERS
]
"""An id in a request body (account, payment method, provider): 1 to `ID_LENGTH_MAX`
characters, no control character."""
