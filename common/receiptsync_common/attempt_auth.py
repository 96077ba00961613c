"""Per-attempt secrets and signatures, as pure functions the operator and the worker share.

* Everything secret about an attempt is *derived* from the operator's credential key and the attempt's
  job id (HMAC-SHA256, one label per use): its database password, its Redis password, its heartbeat
  key, the key that signs its payload. The operator stores none of them: a restarted operator derives
  the same values again, and a leaked attempt secret tells nothing about any other attempt.
* Heartbeats carry ``mac``: HMAC-SHA256 of their other fields (canonical JSON) under the attempt's
  heartbeat key, which only that attempt's worker is given. The operator drops a heartbeat whose
  MAC does not verify, so nobody else can speak for an attempt, even with write access to the stream.
* The payload the operator writes to Redis carries ``mac`` too, under a key only the operator can
  derive: a payload someone else rewrote is noticed when the operator reads it back.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping

from . import contract

MIN_KEY_LENGTH = 32

PURPOSE_DATABASE = "database"
PURPOSE_REDIS = "redis"
PURPOSE_HEARTBEAT = "heartbeat"
PURPOSE_PAYLOAD = "payload"
PAYLOAD_MAC_FIELD = "mac"


class CredentialKeyError(ValueError):
    """A credential key that is too short to derive secrets from."""


def master_key(text: str) -> bytes:
    """The operator's credential key (any string of at least 32 characters; hex is customary)."""
    if len(text) < MIN_KEY_LENGTH:
        raise CredentialKeyError(f"the credential key must be at least {MIN_KEY_LENGTH} characters long")
    return text.encode("utf-8")


def new_master_key() -> str:
    return secrets.token_hex(32)


def derive(master: bytes, purpose: str, job_id: str) -> bytes:
    return hmac.new(master, f"receiptsync/{purpose}/{job_id}".encode("utf-8"), hashlib.sha256).digest()


def password(master: bytes, purpose: str, job_id: str) -> str:
    """A 43-character URL-safe password (256 bits) for ``purpose`` of one attempt."""
    return base64.urlsafe_b64encode(derive(master, purpose, job_id)).decode("ascii").rstrip("=")


def heartbeat_key(master: bytes, job_id: str) -> str:
    """The attempt's heartbeat signing key, hex (what its worker gets in its Secret)."""
    return derive(master, PURPOSE_HEARTBEAT, job_id).hex()


def _canonical(fields: Mapping[str, object], without: str) -> bytes:
    return json.dumps({str(k): str(v) for k, v in fields.items() if k != without}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def heartbeat_mac(key_hex: str, fields: Mapping[str, object]) -> str:
    return hmac.new(bytes.fromhex(key_hex), _canonical(fields, contract.HB_MAC), hashlib.sha256).hexdigest()


def sign_heartbeat(key_hex: str, fields: Mapping[str, str]) -> dict[str, str]:
    """``fields`` plus their MAC (what the worker writes)."""
    return {**fields, contract.HB_MAC: heartbeat_mac(key_hex, fields)}


def heartbeat_verifies(key_hex: str, fields: Mapping[str, object]) -> bool:
    given = fields.get(contract.HB_MAC)
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given, heartbeat_mac(key_hex, fields))


def sign_payload(master: bytes, job_id: str, payload: Mapping[str, object]) -> dict[str, object]:
    """The payload dict with its MAC (only the operator holds the key)."""
    key = derive(master, PURPOSE_PAYLOAD, job_id)
    body = json.dumps({k: v for k, v in payload.items() if k != PAYLOAD_MAC_FIELD}, sort_keys=True)
    return {**payload, PAYLOAD_MAC_FIELD: hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()}


def payload_verifies(master: bytes, job_id: str, payload: Mapping[str, object]) -> bool:
    given = payload.get(PAYLOAD_MAC_FIELD)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, str(sign_payload(master, job_id, payload)[PAYLOAD_MAC_FIELD]))


# --- PostgreSQL: the password as a SCRAM-SHA-256 verifier, so the clear text never reaches the server ---
SCRAM_ITERATIONS = 4096


def scram_verifier(password_text: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """What ``CREATE ROLE ... PASSWORD '<verifier>'`` stores (RFC 5802/7677, as PostgreSQL writes it)."""
    salted = hashlib.pbkdf2_hmac("sha256", password_text.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = (lambda raw: base64.b64encode(raw).decode("ascii"))
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
