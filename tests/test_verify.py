"""``flowyard.verify``: a receiver's one call that checks a delivery's signature header."""

import hashlib
import hmac
import time

import pytest

import flowyard
from flowyard.signing import signature, signature_header

SECRET = "whsec_0123456789abcdef"
BODY = b'{"id":"evt_01JB","topic":"jobs.completed","data":{"job_id":"job_01JB"}}'
T = 1_800_000_000


def header_for(body: bytes = BODY, secret: str = SECRET, t: int = T) -> str:
    return signature_header(secret, body, t)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    digest = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert flowyard.verify(SECRET, BODY, f"t={T},v1={digest}", now=T)


def test_a_fresh_signature_verifies_with_the_default_tolerance() -> None:
    assert flowyard.verify(SECRET, BODY, signature_header(SECRET, BODY))


def test_a_body_given_as_text_is_taken_as_utf8() -> None:
    body = '{"name":"café"}'
    assert flowyard.verify(SECRET, body, header_for(body.encode()), now=T)


def test_a_tampered_body_fails() -> None:
    header = header_for()
    assert not flowyard.verify(SECRET, BODY.replace(b"job_01JB", b"job_01JC"), header, now=T)
    assert not flowyard.verify(SECRET, BODY + b"\n", header, now=T)


def test_a_wrong_secret_fails() -> None:
    assert not flowyard.verify(SECRET + "x", BODY, header_for(), now=T)
    assert not flowyard.verify(SECRET, BODY, header_for(secret="whsec_another_secret"), now=T)


def test_an_old_or_future_timestamp_fails() -> None:
    header = header_for()
    assert flowyard.verify(SECRET, BODY, header, now=T + 300)
    assert not flowyard.verify(SECRET, BODY, header, now=T + 301)
    assert not flowyard.verify(SECRET, BODY, header, now=T - 301)
    assert flowyard.verify(SECRET, BODY, header, now=T + 3000, tolerance=3600)
    assert not flowyard.verify(SECRET, BODY, header, now=T + 10, tolerance=5)
    stale = signature_header(SECRET, BODY, int(time.time()) - 600)
    assert not flowyard.verify(SECRET, BODY, stale)


def test_a_timestamp_moved_without_resigning_fails() -> None:
    v1 = signature(SECRET, T, BODY)
    assert not flowyard.verify(SECRET, BODY, f"t={T + 1},v1={v1}", now=T)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v1={signature(SECRET, T, BODY)}",  # no timestamp
        f"t={T}",  # no signature
        f"t={T},v1=",
        f"t=,v1={signature(SECRET, T, BODY)}",
        f"t=notanumber,v1={signature(SECRET, T, BODY)}",
        f"t=+{T},v1={signature(SECRET, T, BODY)}",
        f"t=-{T},v1={signature(SECRET, T, BODY)}",
        f"t={T:_},v1={signature(SECRET, T, BODY)}",  # 1_800_000_000: int() would take it
        f"t={T},t={T + 1},v1={signature(SECRET, T, BODY)}",  # which one was signed?
        f"t={T},v1=é{signature(SECRET, T, BODY)[1:]}",  # not ASCII
    ],
)
def test_a_malformed_header_fails(header: str | None) -> None:
    assert not flowyard.verify(SECRET, BODY, header, now=T)


def test_any_matching_v1_value_verifies() -> None:
    good = signature(SECRET, T, BODY)
    other = signature("whsec_the_previous_secret", T, BODY)
    assert flowyard.verify(SECRET, BODY, f"t={T},v1={other},v1={good}", now=T)
    assert flowyard.verify(SECRET, BODY, f"t={T},v1={good},v1={other}", now=T)
    assert flowyard.verify(SECRET, BODY, f"t={T}, v1={other}, v1={good}", now=T)
    assert not flowyard.verify(SECRET, BODY, f"t={T},v1={other},v1={'0' * 64}", now=T)


def test_other_schemes_are_ignored() -> None:
    good = signature(SECRET, T, BODY)
    assert flowyard.verify(SECRET, BODY, f"t={T},v0=abc,v1={good},v2=def", now=T)
    assert not flowyard.verify(SECRET, BODY, f"t={T},v2={good}", now=T)


def test_it_is_the_signing_modules_verify() -> None:
    from flowyard import signing

    assert flowyard.verify is signing.verify
