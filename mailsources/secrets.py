"""Mail-source passwords and client secrets, encrypted at rest.

The Fernet key is derived (HKDF-SHA256) from ``SOURCE_SECRET_KEY``, which lives
in the environment, never in the database: a database dump alone reveals no
secret. Rotating that key means re-entering the secrets.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnavailable(Exception):
    pass


@functools.cache
def _fernet(key_material: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"webadmin-mail-source-secrets",
        info=b"fernet-v1",
    ).derive(key_material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(plaintext: str) -> bytes:
    return _fernet(settings.SOURCE_SECRET_KEY).encrypt(plaintext.encode())


def decrypt_secret(token: bytes | memoryview) -> str:
    if not token:
        raise SecretUnavailable("no password / client secret is stored for this source")
    try:
        return _fernet(settings.SOURCE_SECRET_KEY).decrypt(bytes(token)).decode()
    except InvalidToken:
        raise SecretUnavailable(
            "the stored secret cannot be decrypted (SOURCE_SECRET_KEY changed?): enter it again"
        ) from None
