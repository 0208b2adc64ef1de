"""The ledger key: an Ed25519 key that signs every entry and every checkpoint.

It is not the token key (governance/tokens.py): whoever can mint tokens cannot sign history,
and the reverse. It comes from `UD_LEDGER_KEY` (a PEM private key, from the secret store at
scale) or the home's `ledger.key` (mode 0600, made on first use). Verifying needs only the
public key, which every checkpoint records, so a checkpoint kept off the machine also says
which key the history was signed with.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError
from ..home import Home

ENV_VAR = "UD_LEDGER_KEY"
FILE = "ledger.key"


def public_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@lru_cache(maxsize=32)
def public_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))


def fingerprint(public_b64: str) -> str:
    return hashlib.sha256(public_b64.encode()).hexdigest()[:16]


def verify_with(public_b64: str, signature: str, message: bytes) -> bool:
    try:
        public_from_text(public_b64).verify(base64.b64decode(signature), message)
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass(frozen=True)
class LedgerKey:
    private: Ed25519PrivateKey
    source: str  # where it came from, for people: never the key itself

    @cached_property
    def public(self) -> str:
        return public_text(self.private.public_key())

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()

    def verify(self, signature: str, message: bytes) -> bool:
        return verify_with(self.public, signature, message)

    @classmethod
    def from_pem(cls, pem: str, source: str) -> LedgerKey:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except ValueError:
            raise ConfigError(
                "UD-LEDGER-KEY",
                f"{source} is not a PEM private key",
                "give an Ed25519 key in PEM (openssl genpkey -algorithm ed25519)",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                "UD-LEDGER-KEY",
                f"{source} is not an Ed25519 key",
                "openssl genpkey -algorithm ed25519",
            )
        return cls(key, source)

    @classmethod
    def for_home(cls, home: Home | None = None) -> LedgerKey:
        """`UD_LEDGER_KEY`, else the home's ledger.key (made, private, on first use)."""
        if os.environ.get(ENV_VAR):
            return _parsed(os.environ[ENV_VAR], f"${ENV_VAR}")
        home = home or Home.current()
        path = home.root / FILE
        if not path.exists():
            home.ensure()
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_name(f".{FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            try:  # linked whole into place: of two processes making it, one key wins
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return _parsed(Path(path).read_text(), str(path))


@lru_cache(maxsize=16)
def _parsed(pem: str, source: str) -> LedgerKey:
    """Parsing a key costs more than an append: once per key per process."""
    return LedgerKey.from_pem(pem, source)
