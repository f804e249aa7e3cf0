"""SNOMED CT concept ids: the well-formedness check of an SCTID.

Source: SNOMED CT Technical Implementation Guide §6.1 (SCTID): 6–18 digits, the last a Verhoeff check digit,
the two before it the partition identifier (00 = concept in the international release short form,
10 = concept in an extension long form).
"""

from __future__ import annotations

from typing import Final

SNOMED_CT: Final = "http://snomed.info/sct"

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
# Row i of the position table is the permutation _P1 applied i times (Verhoeff 1969).
_P = [tuple(range(10))]
for _ in range(7):
    _P.append(tuple(_P1[v] for v in _P[-1]))


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit of `digits` is the Verhoeff check digit of the rest."""
    check = 0
    for i, char in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(char)]]
    return check == 0


def is_snomed_concept_id(sctid: str) -> bool:
    """True when `sctid` is a well-formed SNOMED CT concept id (6–18 digits, no leading zero, concept
    partition 00 or 10, Verhoeff check digit correct). It does not prove the concept exists in a release."""
    return (
        sctid.isdigit()
        and 6 <= len(sctid) <= 18
        and sctid[0] != "0"
        and sctid[-3:-1] in ("00", "10")
        and verhoeff_valid(sctid)
    )
