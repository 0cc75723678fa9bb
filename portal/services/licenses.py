"""License certificates: compact JWS signed with the installation's Ed25519 key (EdDSA)."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime, time, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from portal.models import Activation


def _key_path() -> str:
    return os.path.join(current_app.instance_path, current_app.config["SIGNING_KEY_FILE"])


def signing_key() -> OKPKey:
    """Load the key, making it on first use. ``O_EXCL`` keeps two processes from racing."""
    cache = current_app.extensions.setdefault("portal_signing_key", {})
    path = _key_path()
    if path in cache:
        return cache[path]
    if not os.path.exists(path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    with open(path, "rb") as handle:
        key = OKPKey.import_key(handle.read())
    key.ensure_kid()
    cache[path] = key
    return key


def public_jwks() -> dict:
    """The JWK Set published at ``/.well-known/jwks.json``."""
    key = signing_key()
    public = key.as_dict(private=False)
    public.update({"use": "sig", "alg": "EdDSA", "kid": key.kid})
    return {"keys": [public]}


def issue_certificate(activation: Activation, now: datetime | None = None) -> str:
    """Sign the claims of spec section 3 for one activation."""
    now = now or datetime.now(UTC)
    line = activation.line
    entitlement = line.entitlement
    expiry = now + timedelta(days=current_app.config["LICENSE_VALIDITY_DAYS"])
    if line.license_model == "subscription" and line.end_date is not None:
        expiry = datetime.combine(line.end_date + timedelta(days=1), time.min, tzinfo=UTC)
    not_before = now
    if line.start_date is not None:
        not_before = max(now, datetime.combine(line.start_date, time.min, tzinfo=UTC))
    claims = {
        "iss": current_app.config["BASE_URL"],
        "jti": str(activation.id),
        "activation_id": activation.id,
        "entitlement": entitlement.code,
        "sku": line.product.sku,
        "license_model": line.license_model,
        "host_id": activation.host_id,
        "seats": activation.seats,
        "iat": int(now.timestamp()),
        "nbf": int(not_before.timestamp()),
        "exp": int(expiry.timestamp()),
        "maintenance_end": line.maintenance_end.isoformat() if line.maintenance_end else None,
    }
    key = signing_key()
    header = {"alg": "EdDSA", "typ": "JWT", "kid": key.kid}
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True)
    # The spec asks for "EdDSA", the name every JOSE library verifies today; joserfc warns
    # that RFC 9864 prefers the fully specified "Ed25519" name for the same signature.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, payload, key, algorithms=["EdDSA"])
