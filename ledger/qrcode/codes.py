"""The city QR code (城市二维码) in its compact binary form, so that terminals
read it fast: a code fits QR version 10 at error correction M (at most 205
bytes here). Its text is ``CU:`` and the base45 (RFC 9285) of the bytes: every
character is in the QR alphanumeric set.

A **static code** (an object, a place, a person's card) is signed by an
institution or department key certified on the ledger::

    kind 0x21 | signer key id (8) | scheme (8) | guide URL (8) | system (4)
    | identity (16) | serial (12) | not before (4) | not after (4)
    | department segment (1 + n) | content (1 + n) | SM2 signature r||s (64)

the three segments of the seeds: the city management segment (guide URL id,
code system id, authorisation = the approved scheme, attribute = the kind
byte, identity = the identifier), the department's own segment, and the
content; long content goes by reference (the identifier). Personal content is
SM4-encrypted (CTR, the serial as its nonce; the signature covers the
ciphertext) so only departments holding the scheme's content key read it.

A **dynamic code** (a person paying or passing) is made offline by the user's
device with a user key that the city institution certified in compact form::

    kind 0x22 | user certificate (125) | time (4) | nonce (4) | payload (n)
    | SM2 signature by the user key (64)
    user certificate: institution key id (8) | scheme (8) | user id (8)
    | not after (4) | compressed SM2 key (33) | SM2 signature (64)

Ids of 8 bytes are prefixes: of a key's SM3 fingerprint and of a scheme's or
URL's UUID, resolved against the trust bundle. Times are Unix seconds.
"""

from __future__ import annotations

import binascii
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import base45

from chaincode.encoding import sm3
from ledger import crypto
from ledger.crypto.sm2 import compress, decompress

PREFIX = "CU:"
STATIC, DYNAMIC = 0x21, 0x22
MAX_BYTES = 205  # QR version 10 at M: 311 alphanumeric characters, less PREFIX
MAX_SEGMENT = 64  # department segment and content, each
_CERT_DOMAIN = b"cityunion/user-cert/1"  # what an institution signs, apart
_STATIC_HEAD = struct.Struct(">B8s8s8s4s16s12sII")  # up to the segments
_CERT_BODY = struct.Struct(">8s8s8sI33s")  # what the institution signs
_CERT_SIZE = _CERT_BODY.size + 64
_DYNAMIC_HEAD = struct.Struct(">B125sI4s")
SIG = 64


def key_id(fingerprint: str) -> bytes:
    """The 8-byte id of a certified key: its SM3 fingerprint's first bytes."""
    return bytes.fromhex(fingerprint)[:8]


def ref(uuid: str | UUID) -> bytes:
    """The 8-byte reference of a scheme or guide URL: its UUID's first bytes."""
    return UUID(str(uuid)).bytes[:8]


def system_id(code_type: str) -> bytes:
    """The code system id of a scheme's code type."""
    return sm3(code_type.encode())[:4]


def _text(data: bytes) -> str:
    return PREFIX + base45.b45encode(data).decode("ascii")


@dataclass(frozen=True)
class StaticCode:
    signer: bytes
    scheme: bytes
    url: bytes
    system: bytes
    identifier: UUID
    serial: bytes
    not_before: int
    not_after: int
    department: bytes
    content: bytes
    encrypted: bool
    body: bytes  # what the signature covers
    signature: bytes
    kind = "static"


@dataclass(frozen=True)
class UserCert:
    issuer: bytes  # the institution key's id
    scheme: bytes
    user: bytes  # a pseudonymous user id, no personal data
    not_after: int
    public_key: bytes  # 64-byte x || y
    body: bytes
    signature: bytes

    @property
    def signed(self) -> bytes:
        return _CERT_DOMAIN + self.body


@dataclass(frozen=True)
class DynamicCode:
    cert: UserCert
    at: int
    nonce: bytes
    payload: bytes
    body: bytes
    signature: bytes
    kind = "dynamic"

    @property
    def serial(self) -> bytes:
        """The user id and nonce: 12 bytes, like a static code's serial."""
        return self.cert.user + self.nonce


Code = StaticCode | DynamicCode


def _segment(value: bytes, field: str) -> bytes:
    if len(value) > MAX_SEGMENT:
        raise ValueError(f"{field} is {len(value)} bytes; at most {MAX_SEGMENT} "
                         "fit in a code (carry long content by reference)")
    return bytes([len(value)]) + value


def _ctr(key: bytes, serial: bytes, data: bytes) -> bytes:
    """SM4 in counter mode; the serial (unique per code) is the nonce."""
    backend = crypto.get_backend()
    stream = b"".join(backend.sm4_encrypt_block(key, serial + i.to_bytes(4, "big"))
                      for i in range((len(data) + 15) // 16))
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def new_serial(prefix: str = "") -> bytes:
    """A random 12-byte serial starting with ``prefix`` (hex, a batch's)."""
    head = bytes.fromhex(prefix)
    return head + secrets.token_bytes(12 - len(head))


def sign_static(*, signer_fingerprint: str, scheme_id: str, guide_url_id: str,
                code_type: str, identifier_id: str, not_before: datetime,
                not_after: datetime, private: bytes, department: bytes = b"",
                content: bytes = b"", content_key: bytes | None = None,
                serial: bytes | None = None) -> str:
    """A static code's text, signed with the signer's private key. With
    ``content_key`` (16 bytes) the content is SM4-encrypted."""
    serial = serial or new_serial()
    if len(serial) != 12:
        raise ValueError("serial must be 12 bytes")
    if content_key is not None:
        content = _ctr(content_key, serial, content)
    head = _STATIC_HEAD.pack(
        STATIC, key_id(signer_fingerprint), ref(scheme_id), ref(guide_url_id),
        system_id(code_type), UUID(identifier_id).bytes, serial,
        int(not_before.timestamp()), int(not_after.timestamp()))
    content_segment = bytearray(_segment(content, "the content"))
    if content_key is not None:
        content_segment[0] |= 0x80  # the flag: SM4-encrypted
    body = head + _segment(department, "the department segment") + content_segment
    if len(body) + SIG > MAX_BYTES:
        raise ValueError(
            f"the department segment and content are {len(department)} + "
            f"{len(content)} bytes; at most {MAX_BYTES - SIG - len(head) - 2} "
            "together keep the code within QR version 10 (carry long content by "
            "reference)")
    signature = crypto.get_backend().sm2_sign(private, body)
    return _text(body + signature)


def issue_user_cert(*, institution_private: bytes, institution_fingerprint: str,
                    scheme_id: str, user_id: bytes, user_public: bytes,
                    not_after: datetime) -> bytes:
    """The compact certificate of a user's key, signed by the city's
    institution key (125 bytes; the device keeps it with its private key)."""
    if len(user_id) != 8:
        raise ValueError("user_id must be 8 bytes (a pseudonym, not personal data)")
    body = _CERT_BODY.pack(key_id(institution_fingerprint), ref(scheme_id),
                           user_id, int(not_after.timestamp()),
                           compress(user_public))
    signature = crypto.get_backend().sm2_sign(institution_private,
                                              _CERT_DOMAIN + body)
    return body + signature


def make_dynamic(cert: bytes, user_private: bytes, payload: bytes = b"",
                 at: int | None = None) -> str:
    """A dynamic code made on the user's device, offline, at ``at`` (now)."""
    if len(cert) != _CERT_SIZE:
        raise ValueError(f"a compact user certificate is {_CERT_SIZE} bytes")
    body = _DYNAMIC_HEAD.pack(DYNAMIC, cert, int(time.time()) if at is None else at,
                              secrets.token_bytes(4)) + payload
    if len(body) + SIG > MAX_BYTES:
        raise ValueError(f"the payload is {len(payload)} bytes; at most "
                         f"{MAX_BYTES - SIG - _DYNAMIC_HEAD.size} keep the code "
                         "within QR version 10")
    return _text(body + crypto.get_backend().sm2_sign(user_private, body))


def parse_user_cert(data: bytes) -> UserCert:
    if len(data) != _CERT_SIZE:
        raise ValueError(f"a compact user certificate is {_CERT_SIZE} bytes, "
                         f"not {len(data)}")
    issuer, scheme, user, not_after, point = _CERT_BODY.unpack_from(data)
    public = decompress(point)
    if public is None:
        raise ValueError("the user certificate's key is not an SM2 point")
    return UserCert(issuer, scheme, user, not_after, public,
                    data[:-SIG], data[-SIG:])


def _bytes(text: str) -> bytes:
    if not text.startswith(PREFIX):
        raise ValueError(f"not a city QR code (its text starts with {PREFIX})")
    try:
        return bytes(base45.b45decode(text[len(PREFIX):]))
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"malformed code: not base45 ({e})") from None


def parse(text: str) -> Code:
    """A code from its text, not yet verified; ValueError naming what is
    malformed."""
    data = _bytes(text.rstrip("\r\n"))
    if not data:
        raise ValueError("malformed code: empty")
    body, signature = data[:-SIG], data[-SIG:]
    if data[0] == DYNAMIC:
        if len(body) < _DYNAMIC_HEAD.size:
            raise ValueError("malformed code: a dynamic code is too short")
        _, cert, at, nonce = _DYNAMIC_HEAD.unpack_from(body)
        try:
            user_cert = parse_user_cert(cert)
        except ValueError as e:
            raise ValueError(f"malformed code: {e}") from None
        return DynamicCode(user_cert, at, nonce, body[_DYNAMIC_HEAD.size:], body,
                           signature)
    if data[0] != STATIC:
        raise ValueError(f"malformed code: unknown kind 0x{data[0]:02x} (static "
                         f"0x{STATIC:02x} and dynamic 0x{DYNAMIC:02x} are known)")
    if len(body) < _STATIC_HEAD.size + 2:
        raise ValueError("malformed code: a static code is too short")
    (_, signer, scheme, url, system, ident, serial, nb,
     na) = _STATIC_HEAD.unpack_from(body)
    at = _STATIC_HEAD.size
    department = body[at + 1:at + 1 + body[at]]
    at += 1 + len(department)
    flags = body[at] if at < len(body) else 0
    content = body[at + 1:]
    if at >= len(body) or len(content) != flags & 0x7F:
        raise ValueError("malformed code: its segments do not add up")
    return StaticCode(signer, scheme, url, system, UUID(bytes=ident), serial, nb,
                      na, department, content, bool(flags & 0x80), body,
                      signature)


def read_content(code: StaticCode, content_key: bytes | None) -> bytes:
    """The content in clear: SM4-decrypted with the scheme's content key when
    it is encrypted (ValueError without a key)."""
    if not code.encrypted:
        return code.content
    if content_key is None:
        raise ValueError("the content is SM4-encrypted; a content key is needed")
    return _ctr(content_key, code.serial, code.content)
