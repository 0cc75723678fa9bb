"""Human-friendly, unguessable codes (``ENT-7F3K-Q9D2-XM4P``)."""

from __future__ import annotations

import secrets

# Crockford-style alphabet: no I, L, O, U, so codes survive being read aloud or retyped.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def random_code(prefix: str, groups: int = 3, size: int = 4) -> str:
    """60 random bits for the default shape: not guessable, still easy to type."""
    parts = ["".join(secrets.choice(ALPHABET) for _ in range(size)) for _ in range(groups)]
    return "-".join([prefix, *parts])


def entitlement_code() -> str:
    return random_code("ENT")


def activation_code() -> str:
    return random_code("ACT", groups=4)
