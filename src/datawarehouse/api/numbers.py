"""Whole numbers in requests (headers, query parameters, XML text), read the one safe way.

``str.isdigit`` accepts more than ``int`` does (``"²"`` is a digit to it, not to ``int``), and
``int`` refuses strings of more than 4,300 digits: checking with one and converting with the
other turned such values into server errors. Here a number is ASCII digits only, of bounded
length, so the conversion cannot fail.
"""

from __future__ import annotations

import re

MAX_DIGITS = 19  # more than any count or size needs; callers bound the value itself (and 19 digits stay cheap)
_DIGITS = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}", re.ASCII)


def whole_number(text: str | None, *, signed: bool = False) -> int | None:
    """``text`` as an int when it is 1-19 ASCII digits (with ``signed``, optionally after a
    ``-``); ``None`` for anything else, for the caller to refuse in its protocol's terms."""
    if text is None:
        return None
    negative = signed and text.startswith("-")
    digits = text[1:] if negative else text
    if _DIGITS.fullmatch(digits) is None:
        return None
    return -int(digits) if negative else int(digits)
