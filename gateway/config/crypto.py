"""CHAP secrets at rest: RSA-OAEP with the key pair ceph-iscsi uses.

When both ``<ceph_config_dir>/<priv_key>`` and ``<ceph_config_dir>/<pub_key>`` exist, secrets
are stored as base64(RSA-OAEP(SHA-256, MGF1-SHA-256)); decryption falls back to OAEP-SHA1,
which older ceph-iscsi (python-crypto) wrote, so an imported ``gateway.conf`` keeps working.
A node with only the public key can store new secrets but cannot read them back: the codec
then keeps the ciphertext "sealed" instead of failing the whole config.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.config.errors import SecretError


def _oaep(algorithm: hashes.HashAlgorithm) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=algorithm), algorithm=algorithm, label=None)


@dataclass(frozen=True, repr=False)
class SecretCipher:
    """Encrypts with the public key, decrypts with the private key (either may be absent)."""

    public_key: rsa.RSAPublicKey | None = None
    private_key: rsa.RSAPrivateKey | None = None
    # ciphertext -> secret: an RSA decryption costs about a millisecond and every load
    # decodes every secret; a ciphertext always opens to the same secret.
    _opened: dict[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return (f"SecretCipher(encrypt={self.public_key is not None}, "
                f"decrypt={self.private_key is not None})")

    @property
    def can_encrypt(self) -> bool:
        return self.public_key is not None

    @property
    def can_decrypt(self) -> bool:
        return self.private_key is not None

    def encrypt(self, secret: str) -> str:
        if self.public_key is None:
            raise SecretError("no public key to encrypt CHAP secrets with")
        return base64.b64encode(self.public_key.encrypt(secret.encode(), _oaep(hashes.SHA256()))).decode()

    def decrypt(self, sealed: str) -> str:
        if self.private_key is None:
            raise SecretError("no private key to decrypt CHAP secrets with")
        secret = self._opened.get(sealed)
        if secret is None:
            secret = self._decrypt(sealed)
            if len(self._opened) >= 4096:
                self._opened.clear()
            self._opened[sealed] = secret
        return secret

    def _decrypt(self, sealed: str) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("stored CHAP secret is not base64; was it written in clear "
                              "with *_encryption_enabled set?") from None
        for algorithm in (hashes.SHA256(), hashes.SHA1()):
            try:
                return self.private_key.decrypt(raw, _oaep(algorithm)).decode()
            except ValueError:
                continue
        raise SecretError("stored CHAP secret does not decrypt with this private key "
                          "(are the gateways' key files identical?)")


NO_CIPHER = SecretCipher()


def load_cipher(config_dir: str, priv_key: str, pub_key: str) -> SecretCipher:
    """The cipher for the key files, or ``NO_CIPHER`` unless both files exist (ceph-iscsi rule)."""
    priv_path = os.path.join(config_dir, priv_key)
    pub_path = os.path.join(config_dir, pub_key)
    if not (os.path.exists(priv_path) and os.path.exists(pub_path)):
        return NO_CIPHER
    try:
        with open(pub_path, "rb") as f:
            public = serialization.load_pem_public_key(f.read())
        with open(priv_path, "rb") as f:
            private = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise SecretError(f"cannot load the CHAP key pair {priv_path} / {pub_path}: "
                          f"{type(e).__name__}") from None
    if not isinstance(public, rsa.RSAPublicKey) or not isinstance(private, rsa.RSAPrivateKey):
        raise SecretError(f"{priv_path} / {pub_path} must be an RSA key pair (PEM)")
    return SecretCipher(public, private)


def cipher_from_settings(settings) -> SecretCipher:
    return load_cipher(settings.ceph_config_dir, settings.priv_key, settings.pub_key)


def generate_key_pair(config_dir: str, priv_key: str = "iscsi-gateway.key",
                      pub_key: str = "iscsi-gateway-pub.key", bits: int = 2048) -> None:
    """Write a new RSA key pair (PEM, private key mode 0600); for set-up scripts and tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(os.path.join(config_dir, priv_key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    with open(os.path.join(config_dir, pub_key), "wb") as f:
        f.write(pub)
