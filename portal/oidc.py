"""OpenID Connect sign-in with one or more providers (Authlib's Flask client).

Authorization code flow with PKCE (S256); ``state`` and ``nonce`` live in the signed
session and are single use (Authlib pops them at the callback). The ID token is checked
for its signature (the provider's JWKS), ``iss`` (exactly the provider's issuer), ``aud``
(our client id; ``azp`` when there are several audiences), ``exp`` and ``nonce``; with the
RFC 9207 ``iss`` callback parameter checked against the provider the flow started with.
Users are keyed by issuer + subject, never by email alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session
from joserfc.errors import JoseError
from requests import RequestException

oauth = OAuth()

DEFAULT_SCOPE = "openid email profile"


class SignInError(Exception):
    """A callback we refuse; the message is safe to show."""


@dataclass(frozen=True)
class VerifiedIdentity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    id_token: str | None


def init_app(app: Flask) -> None:
    """Register every configured provider with Authlib."""
    oauth.init_app(app)
    app.extensions["portal_oidc"] = {}
    for name, settings in (app.config.get("OIDC_PROVIDERS") or {}).items():
        missing = [k for k in ("server_metadata_url", "client_id", "client_secret") if not settings.get(k)]
        if missing:
            raise RuntimeError(f"OIDC provider {name!r} lacks {', '.join(missing)}")
        client = oauth.register(
            name=name,
            client_id=settings["client_id"],
            client_secret=settings["client_secret"],
            server_metadata_url=settings["server_metadata_url"],
            client_kwargs={"scope": settings.get("scope", DEFAULT_SCOPE), "code_challenge_method": "S256"},
            overwrite=True,
        )
        app.extensions["portal_oidc"][name] = client


def providers() -> dict[str, str]:
    """Configured providers: name -> display name, in configuration order."""
    configured = current_app.config.get("OIDC_PROVIDERS") or {}
    return {name: settings.get("display_name") or name.title() for name, settings in configured.items()}


def client_for(name: str):
    return current_app.extensions["portal_oidc"].get(name)


def _claims_options(issuer: str, client_id: str) -> dict[str, Any]:
    # Authlib checks neither ``aud`` nor ``iss`` unless told to.
    return {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }


def check_claims(claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str | None) -> None:
    """Our own checks after Authlib's, so no library default can loosen them."""
    if claims.get("iss") != issuer:
        raise SignInError("The sign-in came from another issuer.")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise SignInError("The sign-in was meant for another application.")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SignInError("The sign-in was meant for another application.")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time() - 60:
        raise SignInError("The sign-in has expired.")
    if nonce is not None and claims.get("nonce") != nonce:
        raise SignInError("The sign-in does not belong to this browser session.")
    if not claims.get("sub"):
        raise SignInError("The provider did not say who you are.")


def verify_id_token(name: str, token: dict[str, Any], nonce: str) -> dict[str, Any]:
    """Validate an ID token from ``token`` (a token response) for provider ``name``."""
    client = client_for(name)
    metadata = client.load_server_metadata()
    try:
        claims = client.parse_id_token(
            token, nonce=nonce, claims_options=_claims_options(metadata["issuer"], client.client_id)
        )
    except (JoseError, ValueError) as error:
        raise SignInError("The identity provider's answer did not check out.") from error
    check_claims(dict(claims), issuer=metadata["issuer"], client_id=client.client_id, nonce=nonce)
    return dict(claims)


def complete_sign_in(name: str, started_with: str | None, args: dict[str, str]) -> VerifiedIdentity:
    """Finish the flow at the callback: every check, then the verified identity."""
    client = client_for(name)
    if client is None or started_with != name:
        raise SignInError("This sign-in was not started here.")
    metadata = client.load_server_metadata()
    issuer = metadata["issuer"]
    # RFC 9207: the authorization response names its issuer; it must be the one we asked.
    iss = args.get("iss")
    if iss is not None and iss != issuer:
        raise SignInError("The sign-in came back from another identity provider.")
    if iss is None and metadata.get("authorization_response_iss_parameter_supported"):
        raise SignInError("The identity provider's answer is incomplete.")
    # Authlib pops the state's data (nonce, PKCE verifier) as it uses it: read the nonce first.
    state_data = client.framework.get_state_data(session, args.get("state")) or {}
    try:
        token = client.authorize_access_token(claims_options=_claims_options(issuer, client.client_id))
    except OAuthError as error:
        raise SignInError("This sign-in link was already used or does not belong to this browser.") from error
    except (JoseError, ValueError) as error:
        raise SignInError("The identity provider's answer did not check out.") from error
    except RequestException as error:
        raise SignInError("The identity provider could not be reached. Try again.") from error
    claims = token.get("userinfo")
    if not claims:
        raise SignInError("The identity provider sent no ID token.")
    check_claims(dict(claims), issuer=issuer, client_id=client.client_id, nonce=state_data.get("nonce"))
    return VerifiedIdentity(
        issuer=issuer,
        subject=str(claims["sub"]),
        email=(claims.get("email") or "").strip().lower() or None,
        email_verified=claims.get("email_verified") is True,
        name=claims.get("name"),
        id_token=token.get("id_token"),
    )


def end_session_url(name: str, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
    """RP-initiated logout at the provider, when it offers it."""
    client = client_for(name)
    if client is None:
        return None
    try:
        endpoint = client.load_server_metadata().get("end_session_endpoint")
    except RequestException:
        return None
    if not endpoint:
        return None
    params = {"client_id": client.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
    if id_token:
        params["id_token_hint"] = id_token
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"
