"""Ed25519 keys for checkpoints: PEM files (RFC 8410, what ``openssl pkey`` reads), key
ids, signing and checking.

The ``cryptography`` package costs about 40 ms to import, so it is imported only when a
key is made, used or checked, never by a run without a key. PEM is read and written
here (Ed25519's PKCS #8 and SubjectPublicKeyInfo encodings are fixed prefixes before the
32 key bytes), which keeps ``cryptography.hazmat.primitives.serialization`` (another
15 ms) out of every run.

A key's id is C2SP signed-note's key hash: the first 4 bytes of
SHA-256(name || "\\n" || 0x01 || public key), written as 8 hex digits; ``KEY_NAME`` is the
name every checkpoint is signed under. A public key is given as its PEM file, or as a
signed-note verifier key line (``name+hash+base64``), which ``keygen`` also prints.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.common.errors import ConfigError

KEY_NAME = "zendesk-audit-etl"
_PRIVATE_DER = bytes.fromhex("302e020100300506032b657004220420")
_PUBLIC_DER = bytes.fromhex("302a300506032b6570032100")
_ED25519 = b"\x01"  # signed-note's signature type byte for Ed25519


def _ed25519() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # lazy: see the module

    return ed25519


def _pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _unpem(text: str, label: str, prefix: bytes, where: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if (
        len(lines) < 3
        or lines[0] != f"-----BEGIN {label}-----"
        or lines[-1] != f"-----END {label}-----"
    ):
        raise ConfigError(f"{where}: not an Ed25519 {label.lower()} in PEM form")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise ConfigError(f"{where}: its PEM body is not base64") from None
    if len(der) != len(prefix) + 32 or not der.startswith(prefix):
        raise ConfigError(f"{where}: not an Ed25519 key (only Ed25519 signs checkpoints)")
    return der[len(prefix) :]


def key_id(public: bytes) -> str:
    return hashlib.sha256(KEY_NAME.encode() + b"\n" + _ED25519 + public).digest()[:4].hex()


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key that checks checkpoint signatures."""

    raw: bytes  # the 32 bytes

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def pem(self) -> str:
        return _pem("PUBLIC KEY", _PUBLIC_DER + self.raw)

    def vkey(self) -> str:
        """The signed-note verifier key: ``name+hash+base64(0x01 || key)``."""
        return f"{KEY_NAME}+{self.id}+{base64.b64encode(_ED25519 + self.raw).decode()}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            _ed25519().Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """A private key; its bytes are never shown (``repr`` names the key id only)."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        self._key = _ed25519().Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes_raw()
        self.public = PublicKey(raw)

    def __repr__(self) -> str:
        return f"SigningKey(id={self.public.id})"

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key.sign(message)
        return signature


def parse_signing_key(pem: str, where: str) -> SigningKey:
    return SigningKey(_unpem(pem, "PRIVATE KEY", _PRIVATE_DER, where))


def parse_public_key(text: str, where: str) -> PublicKey:
    """A public key from its PEM, or from a verifier key line (``keygen`` prints both)."""
    stripped = text.strip()
    if stripped.startswith("-----"):
        return PublicKey(_unpem(stripped, "PUBLIC KEY", _PUBLIC_DER, where))
    name, _, rest = stripped.partition("+")
    hash_hex, _, encoded = rest.partition("+")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raw = b""
    if name != KEY_NAME or len(raw) != 33 or raw[:1] != _ED25519:
        raise ConfigError(f"{where}: not an Ed25519 public key (PEM, or a {KEY_NAME}+... line)")
    key = PublicKey(raw[1:])
    if key.id != hash_hex:
        raise ConfigError(f"{where}: the key id {hash_hex} does not match the key")
    return key


def read_public_key(path: str) -> PublicKey:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise ConfigError(f"--public-key {path}: cannot read it: {why}") from None
    return parse_public_key(text, f"--public-key {path}")


def generate(path: Path) -> PublicKey:
    """Write a new private key to ``path`` (mode 600; never over an existing file)."""
    seed = os.urandom(32)
    key = SigningKey(seed)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists; a key is never overwritten (move it away first)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(_pem("PRIVATE KEY", _PRIVATE_DER + seed))
        out.flush()
        os.fsync(out.fileno())
    return key.public


def load_signing_key(
    key_file: str | None, key_env: str | None, environ: Mapping[str, str]
) -> SigningKey | None:
    """The configured signing key (``[ledger] signing_key_file`` or ``signing_key_env``),
    or None. A key file others could read is refused: whoever reads it can sign."""
    if key_file:
        path = Path(key_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(f"ledger.signing_key_file {path}: cannot read it: {why}") from None
        if mode & 0o077 and not _is_credential(path, environ):
            raise ConfigError(
                f"ledger.signing_key_file {path}: mode {stat.S_IMODE(mode):o} lets others "
                f"read it; run: chmod 600 {path}"
            )
        return parse_signing_key(text, f"ledger.signing_key_file {path}")
    if key_env:
        text = environ.get(key_env, "")
        if not text.strip():
            raise ConfigError(f"ledger.signing_key_env: ${key_env} is not set or empty")
        return parse_signing_key(text, f"ledger.signing_key_env ${key_env}")
    return None


def _is_credential(path: Path, environ: Mapping[str, str]) -> bool:
    """A systemd credential: its directory is the service's own, whatever the mode."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if not credentials:
        return False
    return path.resolve().parent == Path(credentials).resolve()
