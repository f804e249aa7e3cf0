"""Sealed values (consultcam.kit.sealing): what is sealed opens only with the same key and purpose, intact
and young enough."""

from __future__ import annotations

import time

import pytest

from consultcam.kit.sealing import SealBroken, seal, unseal

KEY = bytes(range(32))
VERIFIER = {"codeVerifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "nonce": "n-0S6_WzA2Mj"}


def test_a_sealed_value_opens_with_its_key_and_purpose_and_hides_its_contents() -> None:
    sealed = seal(KEY, "oidc", VERIFIER)

    assert unseal(KEY, "oidc", sealed) == VERIFIER
    assert "dBjftJeZ4CVP" not in sealed
    assert "nonce" not in sealed


@pytest.mark.parametrize(
    ("key", "purpose"), [(bytes(32), "oidc"), (KEY, "smart")], ids=["other key", "other purpose"]
)
def test_another_key_or_purpose_cannot_open_it(key: bytes, purpose: str) -> None:
    with pytest.raises(SealBroken):
        unseal(key, purpose, seal(KEY, "oidc", VERIFIER))


def test_a_tampered_or_old_value_is_refused() -> None:
    sealed = seal(KEY, "oidc", VERIFIER)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]

    with pytest.raises(SealBroken):
        unseal(KEY, "oidc", tampered)
    with pytest.raises(SealBroken):
        unseal(KEY, "oidc", "not a sealed value")
    time.sleep(1.1)
    with pytest.raises(SealBroken):
        unseal(KEY, "oidc", sealed, max_age_seconds=0)
