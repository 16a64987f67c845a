"""API keys: made from 32 random bytes, shown once, stored only as a SHA-256 hash.

A salted slow hash (bcrypt, argon2) protects low-entropy passwords; these keys carry 256 random bits, so a plain
SHA-256 is as safe and lets every request be checked with one index lookup.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "lf_sk_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """Enough of a key for a person to tell keys apart in a listing, too little to use."""
    return key[: len(KEY_PREFIX) + 4]
