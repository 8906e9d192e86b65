"""Web passwords, kept as salted scrypt hashes: never the password itself.

A stored hash reads ``scrypt$N$r$p$salt$hash`` (base64), so the cost can be
raised later without breaking the hashes already stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from memchat.errors import MemchatError

COST = {"n": 2**15, "r": 8, "p": 1}
MIN_LENGTH = 8
# scrypt with n=2**15 and r=8 needs 32 MiB; give it room.
MAXMEM = 64 * 1024 * 1024


class PasswordError(MemchatError):
    """A password that cannot be used; the message says why."""


def hash_password(password: str) -> str:
    """A new salted hash of ``password``, refusing one too short to protect anything."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password is shorter than {MIN_LENGTH} characters: choose a longer one")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, COST["n"], COST["r"], COST["p"])
    return "$".join(["scrypt", str(COST["n"]), str(COST["r"]), str(COST["p"]), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; with nothing stored it takes as long and says False."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected, cost = base64.b64decode(digest), (int(n), int(r), int(p))
        salt_bytes = base64.b64decode(salt)
    except ValueError:
        # Same work as a real check, so response times do not tell which user ids have a password.
        expected, cost, salt_bytes = b"", (COST["n"], COST["r"], COST["p"]), b"no user here"
    actual = _scrypt(password, salt_bytes, *cost)
    return bool(expected) and hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def login_failure_key(kind: str, value: str) -> str:
    """What failed web logins of a user id (``kind`` "user") or an address ("address") are counted under.

    A hash: the store that keeps the counts never holds who tried, or from where.
    """
    if kind == "user":
        value = value.casefold()
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
