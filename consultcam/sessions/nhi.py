"""New Zealand National Health Index (NHI) number validation.

Source: HISO 10046:2023 Consumer Health Identity Standard, NHI number format and check character:
the original format AAANNNC (check digit, mod 11) and the new format AAANNAX (check letter, mod 23,
in use from 2025). Letters I and O are never used; A=1 … Z=24 skipping them.
"""

from __future__ import annotations

import re

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # 24 letters, no I or O
_OLD = re.compile(r"^[A-HJ-NP-Z]{3}\d{4}$")
_NEW = re.compile(r"^[A-HJ-NP-Z]{3}\d{2}[A-HJ-NP-Z]{2}$")


def _value(char: str) -> int:
    return _ALPHABET.index(char) + 1 if char.isalpha() else int(char)


def is_valid_nhi(nhi: str) -> bool:
    """True when `nhi` (any case, surrounding spaces ignored) is a well-formed NHI with a correct check
    character, in either format. Example valid test NHIs: ZZZ0016, ZZZ0024, ZZZ00AC."""
    value = nhi.strip().upper()
    if _OLD.match(value):
        total = sum(_value(c) * w for c, w in zip(value[:6], (7, 6, 5, 4, 3, 2), strict=True))
        remainder = total % 11
        if remainder == 0:
            return False
        check = (11 - remainder) % 10
        return check == int(value[6])
    if _NEW.match(value):
        total = sum(_value(c) * w for c, w in zip(value[:6], (7, 6, 5, 4, 3, 2), strict=True))
        remainder = total % 23
        if remainder == 0:
            return False
        return _ALPHABET[23 - remainder - 1] == value[6]
    return False


def normalise_nhi(nhi: str) -> str:
    """Upper-cased, trimmed NHI; raises ValueError with what to fix when it is not a valid NHI."""
    value = nhi.strip().upper()
    if not is_valid_nhi(value):
        raise ValueError(
            f"{nhi!r} is not a valid NHI number: expected 3 letters then 4 digits (ABC1235) or 3 letters, "
            "2 digits, 2 letters (ABC12DX), with a correct check character. "
            "Check it against the patient record."
        )
    return value
