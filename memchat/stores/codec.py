"""How an item becomes the text a store keeps: plain JSON, or encrypted at rest.

Every store writes and reads items through a ``Codec``, so encryption is done
in this one place for all of them. With ``MEMCHAT_ENCRYPTION_KEY`` set, each
item and the summary are stored as ``{"memchat_encrypted": 1, "token": ...}``,
where the token is Fernet (AES-128-CBC with HMAC-SHA256) under a key derived
from the passphrase with scrypt, salted with the user id, so the same
passphrase gives every user a different key.

Tokens never expire: unlike the SDK's ``EncryptedSession`` (default
``ttl=600``), history does not vanish after ten minutes. A token that does not
decrypt is an error that stops the operation before anything is changed; it is
never skipped or deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from memchat.errors import StoreError
from memchat.items import Item

ENVELOPE = "memchat_encrypted"

# scrypt's cost: about 30 ms a user on a laptop, so guessing passphrases offline is slow too.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class UnreadableError(ValueError):
    """A stored row that is not an item: damaged, or written by another program.

    Readers skip such rows, as the SDK's own sessions do, so one bad row cannot stop every start.
    """


class Codec:
    """Items and summaries to stored text and back, for one user."""

    def __init__(self, user: str, passphrase: str | None = None) -> None:
        self.user = user
        self._fernet: Any = None
        # The key of the search index's word hashes, when the memory is encrypted.
        self._index_key: bytes | None = None
        if passphrase:
            try:
                from cryptography.fernet import Fernet
            except ImportError:
                raise StoreError(
                    "MEMCHAT_ENCRYPTION_KEY needs the encryption extra, which is not installed: "
                    "pip install 'memchat[encryption]' (in a checkout: .venv/bin/pip install -e '.[encryption]')"
                ) from None

            key = hashlib.scrypt(passphrase.encode(), salt=b"memchat/" + user.encode(), dklen=32, **SCRYPT)
            self._fernet = Fernet(base64.urlsafe_b64encode(key))
            self._index_key = hashlib.sha256(b"memchat/index/" + key).digest()

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def index_words(self, words: list[str]) -> list[str]:
        """The words as the search index keeps them: as they are, or keyed hashes when encrypted.

        A hash is written in digits only, so no tokenizer stems or splits it, and a word
        always hashes to the same value under one key: the index can match words without
        holding any. Someone with the file sees how often each hashed word occurs, not what it is.
        """
        if self._index_key is None:
            return words
        return [str(int.from_bytes(hmac.digest(self._index_key, word.encode(), "sha256")[:8], "big")) for word in words]

    def encode(self, item: Item) -> str:
        return self.encode_text(json.dumps(item, ensure_ascii=False))

    def decode(self, stored: str | bytes) -> Item:
        """The item a row holds; ``UnreadableError`` if it holds none, ``StoreError`` if the key does not fit."""
        try:
            data = json.loads(stored)
        except (ValueError, TypeError):
            raise UnreadableError(stored) from None
        if isinstance(data, dict) and ENVELOPE in data:
            data = json.loads(self._decrypt(data))
        if not isinstance(data, dict):
            raise UnreadableError(stored)
        item: Item = data
        return item

    def encode_text(self, text: str) -> str:
        if self._fernet is None:
            return text
        token = self._fernet.encrypt(text.encode()).decode()
        return json.dumps({ENVELOPE: 1, "token": token})

    def decode_text(self, stored: str) -> str:
        """A stored summary; plain text is returned as it is."""
        if not stored.startswith("{"):
            return stored
        try:
            data = json.loads(stored)
        except ValueError:
            return stored
        return self._decrypt(data) if isinstance(data, dict) and ENVELOPE in data else stored

    def _decrypt(self, envelope: dict[str, Any]) -> str:
        if self._fernet is None:
            raise StoreError(
                f"the memory of {self.user} is encrypted: set MEMCHAT_ENCRYPTION_KEY to the passphrase it was written with"
            )
        from cryptography.fernet import InvalidToken

        try:
            return str(self._fernet.decrypt(str(envelope.get("token", "")).encode()).decode())
        except InvalidToken:
            raise StoreError(
                f"cannot decrypt the memory of {self.user}: MEMCHAT_ENCRYPTION_KEY is not the passphrase it was "
                "written with (nothing was changed)"
            ) from None


class Codecs:
    """One ``Codec`` per user, made once: deriving a key takes scrypt's time on purpose."""

    def __init__(self, passphrase: str | None = None) -> None:
        self._passphrase = passphrase
        self._made: dict[str, Codec] = {}

    def __call__(self, user: str) -> Codec:
        if user not in self._made:
            self._made[user] = Codec(user, self._passphrase)
        return self._made[user]
