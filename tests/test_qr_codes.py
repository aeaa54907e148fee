"""City QR codes offline, as a terminal sees them (no ledger): the compact
format's sizes, a PNG read back by two QR readers, every changed byte refused,
dynamic codes' window and replay, revocations and unapproved schemes or URLs
after a bundle refresh, SM4 content, and codes of each crypto backend verified
by the others."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import base45
import cv2
import numpy as np
import pytest

from bench.qr import World
from ledger import crypto
from ledger.qrcode import image
from ledger.qrcode.codes import (
    PREFIX,
    DynamicCode,
    StaticCode,
    issue_user_cert,
    make_dynamic,
    parse,
    read_content,
)
from ledger.qrcode.verify import Verifier


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(crypto.get_backend())


def _revoked(bundle: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return bundle | {"keys": [k | {"status": "revoked"}
                              if k["fingerprint"] == fingerprint else k
                              for k in bundle["keys"]]}


def _tampered(text: str) -> list[str]:
    """The code with one bit of each of its bytes flipped, in turn."""
    data = bytes(base45.b45decode(text[len(PREFIX):]))
    return [PREFIX + base45.b45encode(data[:i] + bytes([data[i] ^ 0x01])
                                      + data[i + 1:]).decode()
            for i in range(len(data))]


def test_codes_fit_version_10(world: World) -> None:
    assert image.version(world.static()) <= 10
    assert image.version(world.static(content=b"x" * 64)) == 10
    with pytest.raises(ValueError, match="at most 74 together keep the code"):
        world.static(content=b"x" * 64, department=b"d" * 11)
    assert image.version(world.dynamic()) <= 10
    private, cert = world.user()
    longest = make_dynamic(cert, private, b"p" * 7)
    assert image.version(longest) == 10
    with pytest.raises(ValueError, match="at most 7 keep the code"):
        make_dynamic(cert, private, b"p" * 8)


def test_png_round_trip_with_two_readers(world: World, tmp_path: Path) -> None:
    """Written by zxing-cpp, read back by zxing-cpp and by OpenCV."""
    verifier = Verifier(world.bundle())
    for text in (world.static(), world.dynamic()):
        png = tmp_path / "code.png"
        png.write_bytes(image.png(text))
        assert image.read(png) == text
        pixels = cv2.imdecode(np.frombuffer(png.read_bytes(), np.uint8),
                              cv2.IMREAD_COLOR)
        assert pixels is not None
        assert cv2.QRCodeDetectorAruco().detectAndDecode(pixels)[0] == text
        assert verifier.verify(text, world.now).ok
    (tmp_path / "blank.png").write_bytes(image.png("x")[:40])
    with pytest.raises(ValueError, match="cannot read the image"):
        image.read(tmp_path / "blank.png")


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_every_changed_byte_is_refused(world: World, kind: str) -> None:
    verifier = Verifier(world.bundle())
    text = world.static() if kind == "static" else world.dynamic()
    assert verifier.verify(text, world.now).ok
    verdicts = [Verifier(world.bundle()).verify(t, world.now)
                for t in _tampered(text)]
    assert len(verdicts) == len(base45.b45decode(text[len(PREFIX):]))
    assert not [v for v in verdicts if v.ok]
    assert {v.reason for v in verdicts} > {"the signature does not verify"}


def test_static_code_segments_and_window(world: World) -> None:
    ident = str(uuid.uuid4())
    text = world.static(identifier_id=ident, department=b"stop-17",
                        content=b"Line 3")
    code = parse(text)
    assert isinstance(code, StaticCode)
    assert (str(code.identifier), code.department, read_content(code, None)) == (
        ident, b"stop-17", b"Line 3")
    verifier = Verifier(world.bundle())
    verdict = verifier.verify(text, world.now)
    assert verdict.ok and verdict.scheme_id == world.scheme
    assert verdict.kind == "static" and verdict.serial == code.serial.hex()
    assert verifier.verify(text, world.now).ok  # static codes scan again and again
    late = verifier.verify(text, world.now + timedelta(days=31))
    assert late.reason == "the code is outside its validity window"


def test_sm4_content_reads_only_with_the_key(world: World) -> None:
    key, other = b"k" * 16, b"o" * 16
    code = parse(world.static(content=b"Zhang San, card 3201", content_key=key))
    assert isinstance(code, StaticCode) and code.encrypted
    assert b"Zhang" not in code.content and len(code.content) == 20
    assert read_content(code, key) == b"Zhang San, card 3201"
    assert read_content(code, other) != b"Zhang San, card 3201"
    with pytest.raises(ValueError, match="a content key is needed"):
        read_content(code, None)


def test_dynamic_window_and_replay(world: World) -> None:
    terminal, elsewhere = Verifier(world.bundle()), Verifier(world.bundle())
    text = world.dynamic(7, age=10)
    code = parse(text)
    assert isinstance(code, DynamicCode) and code.cert.user == (7).to_bytes(8, "big")
    first = terminal.verify(text, world.now)
    assert first.ok and first.kind == "dynamic" and first.scheme_id == world.scheme
    assert terminal.verify(text, world.now).reason.startswith("replayed")
    # another terminal accepts it once too: the usage reports show the pair
    assert elsewhere.verify(text, world.now).ok
    stale = world.dynamic(8, age=61)
    assert terminal.verify(stale, world.now).reason == \
        "the code is outside its 60 s window"
    assert Verifier(world.bundle(), window=120).verify(stale, world.now).ok
    future = world.dynamic(9, age=-30)  # a device clock half a minute ahead
    assert not terminal.verify(future, world.now).ok


def test_refusals_after_a_bundle_refresh(world: World) -> None:
    static, dynamic = world.static(), world.dynamic(3)
    bundle = world.bundle()
    # the department's key revoked: its static codes fail; dynamic codes hang
    # on the institution key
    v = Verifier(_revoked(bundle, world.department["fingerprint"]))
    assert "is revoked" in v.verify(static, world.now).reason
    assert v.verify(dynamic, world.now).ok
    v = Verifier(_revoked(bundle, world.institution["fingerprint"]))
    assert "institution key" in v.verify(dynamic, world.now).reason
    assert "is revoked" in v.verify(static, world.now).reason  # under it
    rejected = [s | {"status": "rejected"} for s in bundle["schemes"]]
    v = Verifier(world.bundle(schemes=rejected))
    for text in (static, world.dynamic(4)):
        assert v.verify(text, world.now).reason == "the code's scheme is not approved"
    v = Verifier(world.bundle(urls=[]))
    assert v.verify(static, world.now).reason == \
        "the code's guide URL is not approved for its scheme"
    v = Verifier(world.bundle(keys=[]))
    assert "not in the trust bundle" in v.verify(static, world.now).reason
    lost = world.bundle(revoked_users=[{"scheme_id": world.scheme,
                                        "user_id": (3).to_bytes(8, "big").hex(),
                                        "until": "2031-01-01T00:00:00Z"}])
    assert Verifier(lost).verify(dynamic, world.now).reason == \
        "the user certificate is revoked"
    assert Verifier(lost).verify(world.dynamic(4), world.now).ok  # another user
    private, cert = world.user(5, days=1)
    expired = make_dynamic(cert, private, at=int(world.now.timestamp()) + 2 * 86400)
    assert Verifier(bundle).verify(expired, world.now + timedelta(days=2)
                                   ).reason == "the user certificate has expired"


def test_a_user_key_cannot_certify_users(world: World) -> None:
    """A compact certificate signed by a department key (not an institution)."""
    private, public = world.backend.sm2_generate()
    cert = issue_user_cert(
        institution_private=world.department["private"],
        institution_fingerprint=world.department["fingerprint"],
        scheme_id=world.scheme, user_id=b"u" * 8, user_public=public,
        not_after=world.now + timedelta(days=1))
    text = make_dynamic(cert, private, at=int(world.now.timestamp()))
    assert "not certified by a city institution key" in Verifier(
        world.bundle()).verify(text, world.now).reason


@pytest.mark.parametrize("text, reason", [
    ("HC1:ABC", "not a city QR code"),
    (PREFIX + "a", "not base45"),
    (PREFIX + base45.b45encode(b"\x55" + bytes(100)).decode(), "unknown kind 0x55"),
    (PREFIX + base45.b45encode(b"\x21" + bytes(100)).decode(), "too short"),
    (PREFIX + base45.b45encode(b"\x22" + bytes(100)).decode(), "too short"),
])
def test_malformed_codes_are_named(world: World, text: str, reason: str) -> None:
    verdict = Verifier(world.bundle()).verify(text, world.now)
    assert not verdict.ok and reason in verdict.reason


@pytest.mark.parametrize("signer", crypto.available_backends())
@pytest.mark.parametrize("checker", crypto.available_backends())
def test_backends_verify_each_others_codes(
        signer: str, checker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(crypto.ENV_VAR, signer)  # every key and code signed so
    w = World.build(crypto.get_backend(signer))
    texts = [w.static(), w.dynamic(1)]
    monkeypatch.setenv(crypto.ENV_VAR, checker)  # certificate chains too
    verifier = Verifier(w.bundle(), backend=crypto.get_backend(checker))
    assert [verifier.verify(t, w.now).reason for t in texts] == ["valid", "valid"]
