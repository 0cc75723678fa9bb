"""License certificates verify offline with an independent JOSE library (PyJWT)."""

import jwt
import pytest

from portal.extensions import db
from portal.services.activations import activate
from tests.factories import write_transaction


@pytest.fixture
def certificate(make):
    customer = make.customer("Contoso")
    reseller = make.partner("reseller", "BlueSky")
    entitlement = make.entitlement(customer, [reseller], seats=5)
    actor = make.actor(customer, "member")
    write_transaction()
    activation, _ = activate(actor, entitlement.lines[0], "host-01.example:a", seats=2)
    db.session.commit()
    return activation


def _public_key(client):
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["Content-Type"] == "application/json"
    (key,) = jwks.get_json()["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert "d" not in key  # never the private half
    return key, jwt.PyJWK(key, algorithm="EdDSA")


def test_certificate_verifies_with_published_jwks(client, certificate, app):
    jwk, key = _public_key(client)
    header = jwt.get_unverified_header(certificate.certificate)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == jwk["kid"]
    claims = jwt.decode(certificate.certificate, key, algorithms=["EdDSA"],
                        issuer=app.config["BASE_URL"], options={"require": ["exp", "nbf", "iat", "iss"]})
    line = certificate.line
    assert claims["activation_id"] == certificate.id
    assert claims["entitlement"] == line.entitlement.code
    assert claims["sku"] == line.product.sku
    assert claims["license_model"] == "perpetual"
    assert claims["host_id"] == "host-01.example:a"
    assert claims["seats"] == 2
    assert claims["maintenance_end"] == line.maintenance_end.isoformat()


@pytest.mark.parametrize("part", [0, 1, 2])
def test_one_changed_byte_fails(client, certificate, part):
    _, key = _public_key(client)
    token = certificate.certificate
    segments = token.split(".")
    segment = segments[part]
    middle = len(segment) // 2
    # Change one character to another base64url character (still decodable).
    replacement = "A" if segment[middle] != "A" else "B"
    segments[part] = segment[:middle] + replacement + segment[middle + 1:]
    tampered = ".".join(segments)
    assert tampered != token
    with pytest.raises(jwt.exceptions.PyJWTError):
        jwt.decode(tampered, key, algorithms=["EdDSA"], options={"verify_iss": False})
