"""An RFC 3161 Time-Stamping Authority, through ``rfc3161-client``: a request
for a message, the HTTP exchange (``TSA_URL``) and the verification of the
response — signature chain to ``TSA_CA_FILE`` (PEM, one or more roots),
optionally the exact signer ``TSA_CERT_FILE``, the message imprint and, on
receipt, the request's nonce."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import requests
from cryptography import x509
from django.conf import settings
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

CONTENT_TYPE_QUERY = "application/timestamp-query"
TIMEOUT_SECONDS = 30


class TsaError(Exception):
    """The TSA did not give a valid timestamp."""


class TsaUnavailable(TsaError):
    """Not reachable or not answering properly now: try again later."""


class TsaInvalid(TsaError):
    """A response that does not verify (signature, certificate, imprint, nonce)."""


@dataclasses.dataclass(frozen=True)
class Timestamp:
    response: bytes  # the DER TimeStampResp
    gen_time: dt.datetime


def _certificates(path: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TsaInvalid(f"cannot read certificates from {path}: {exc}") from None


def verify_response(data: bytes, message: bytes, *, nonce: int | None = None) -> TimeStampResponse:
    """The decoded response if it verifies for ``message``; TsaInvalid otherwise."""
    if not settings.TSA_CA_FILE:
        raise TsaInvalid("TSA_CA_FILE is not set: no root to verify the timestamp against")
    try:
        response = decode_timestamp_response(data)
    except ValueError as exc:
        raise TsaInvalid(f"not a timestamp response: {exc}") from None
    builder = VerifierBuilder(nonce=nonce)
    for root in _certificates(settings.TSA_CA_FILE):
        builder = builder.add_root_certificate(root)
    if settings.TSA_CERT_FILE:
        builder = builder.tsa_certificate(_certificates(settings.TSA_CERT_FILE)[0])
    try:
        builder.build().verify_message(response, message)
    except (VerificationError, ValueError) as exc:
        raise TsaInvalid(f"timestamp does not verify: {exc}") from None
    return response


def timestamp(message: bytes) -> Timestamp:
    """Ask the TSA to timestamp ``message`` (its SHA-256) and verify the answer."""
    if not settings.TSA_URL:
        raise TsaUnavailable("TSA_URL is not set")
    request = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    try:
        answer = requests.post(
            settings.TSA_URL,
            data=request.as_bytes(),
            headers={"Content-Type": CONTENT_TYPE_QUERY},
            timeout=TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise TsaUnavailable(f"{settings.TSA_URL}: {exc}") from None
    if answer.status_code != 200:
        raise TsaUnavailable(f"{settings.TSA_URL}: HTTP {answer.status_code}")
    response = verify_response(answer.content, message, nonce=request.nonce)
    return Timestamp(response=answer.content, gen_time=response.tst_info.gen_time)
