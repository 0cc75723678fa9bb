"""The OIDC test provider and its helpers, against the real ``oidc-provider`` (no portal involved)."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.oidc.provider import (
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    PORTAL_CLIENT_ID,
    PORTAL_CLIENT_SECRET,
    REDIRECT_URIS,
    REPO_ROOT,
    OidcProvider,
    authorization_response,
    authorize_code,
    callback_url,
    free_port,
    login_round_trip,
    logout_round_trip,
    oidc_providers_fixture,  # noqa: F401  (the fixture oidc_providers)
    portal_port_fixture,  # noqa: F401  (the fixture portal_port)
)


def verified_claims(provider: OidcProvider, id_token: str, audience: str) -> dict:
    """The ID token's claims after checking its signature against the provider's JWKS."""
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = jwt.PyJWKSet.from_dict(provider.jwks())[kid]
    return jwt.decode(id_token, key.key, algorithms=["RS256"], audience=audience, issuer=provider.issuer)


def test_discovery_for_both(oidc_providers, portal_port):
    assert set(oidc_providers) == {"alpha", "beta"}
    assert oidc_providers["alpha"].issuer != oidc_providers["beta"].issuer
    for name, provider in oidc_providers.items():
        meta = requests.get(provider.discovery_url, timeout=5).json()
        assert meta["issuer"] == provider.issuer == f"http://127.0.0.1:{provider.port}"
        assert meta["end_session_endpoint"] == f"{provider.issuer}/session/end"
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["authorization_response_iss_parameter_supported"] is True
        assert {"client_secret_basic", "client_secret_post"} <= set(meta["token_endpoint_auth_methods_supported"])
        assert {"openid", "email", "profile"} <= set(meta["scopes_supported"])
        assert provider.portal_config() == {
            "display_name": name.title(),
            "server_metadata_url": provider.discovery_url,
            "client_id": PORTAL_CLIENT_ID,
            "client_secret": PORTAL_CLIENT_SECRET,
        }
    assert f"http://127.0.0.1:{portal_port}/login/oidc/alpha/callback" in REDIRECT_URIS
    assert "http://localhost/login/oidc/beta/callback" in REDIRECT_URIS


def test_authorize_code_gives_a_verifiable_id_token(oidc_providers):
    alpha = oidc_providers["alpha"]
    nonce = secrets.token_urlsafe(12)
    redirect_uri = callback_url("alpha", "http://localhost")
    tokens = authorize_code(alpha, OTHER_CLIENT_ID, OTHER_CLIENT_SECRET, redirect_uri, nonce)
    claims = verified_claims(alpha, tokens["id_token"], OTHER_CLIENT_ID)
    assert claims["aud"] == OTHER_CLIENT_ID
    assert claims["iss"] == alpha.issuer
    assert claims["nonce"] == nonce
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice"
    assert claims["exp"] > time.time()
    with pytest.raises(jwt.InvalidAudienceError):
        verified_claims(alpha, tokens["id_token"], PORTAL_CLIENT_ID)


def test_portal_client_with_an_email_login(oidc_providers, portal_port):
    beta = oidc_providers["beta"]
    redirect_uri = callback_url("beta", f"http://127.0.0.1:{portal_port}")
    auth = authorization_response(beta, PORTAL_CLIENT_ID, redirect_uri, "n-1", login="bob.smith@corp.test")
    assert auth.iss == beta.issuer  # RFC 9207
    tokens = authorize_code(beta, PORTAL_CLIENT_ID, PORTAL_CLIENT_SECRET, redirect_uri, "n-2", "bob.smith@corp.test")
    claims = verified_claims(beta, tokens["id_token"], PORTAL_CLIENT_ID)
    assert (claims["sub"], claims["email"], claims["name"], claims["nonce"]) == (
        "bob.smith@corp.test",
        "bob.smith@corp.test",
        "Bob Smith",
        "n-2",
    )


def test_each_provider_signs_with_its_own_key(oidc_providers):
    alpha, beta = oidc_providers["alpha"], oidc_providers["beta"]
    tokens = authorize_code(
        alpha, PORTAL_CLIENT_ID, PORTAL_CLIENT_SECRET, callback_url("alpha", "http://localhost"), "n"
    )
    kid = jwt.get_unverified_header(tokens["id_token"])["kid"]
    assert kid not in {key["kid"] for key in beta.jwks()["keys"]}
    beta_key = jwt.PyJWK.from_dict(beta.jwks()["keys"][0])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tokens["id_token"], beta_key.key, algorithms=["RS256"], audience=PORTAL_CLIENT_ID)


def test_both_providers_in_one_browser(oidc_providers):
    """Their cookies share 127.0.0.1 (ports do not count): one provider's must not break the other."""
    alpha, beta = oidc_providers["alpha"], oidc_providers["beta"]
    with requests.Session() as browser:
        for provider in (alpha, beta, alpha, beta):
            uri = callback_url(provider.name, "http://localhost")
            auth = authorization_response(provider, PORTAL_CLIENT_ID, uri, "n", login="frank", session=browser)
            assert auth.iss == provider.issuer
    assert "error" not in alpha.stderr() + beta.stderr()


# -- the round-trip helpers against a tiny relying party ----------------------------------


class TinyRelyingParty:
    """Just enough of a portal to exercise login_round_trip and logout_round_trip."""

    def __init__(self, provider: OidcProvider, port: int):
        self.provider, self.origin = provider, f"http://127.0.0.1:{port}"
        self.pending: dict[str, tuple[str, str]] = {}  # state -> (nonce, verifier)
        self.sessions: dict[str, dict] = {}  # cookie -> ID token claims (+ the raw token)
        self.fail_callbacks = False
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                cookie = (self.headers.get("Cookie") or "").partition("rp_session=")[2].split(";")[0]
                status, headers, body = rp.handle(url.path, query, cookie)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    @property
    def callback(self) -> str:
        return f"{self.origin}/login/oidc/op/callback"

    def handle(self, path: str, query: dict, cookie: str) -> tuple[int, dict, str]:
        meta = self.provider.metadata
        if path == "/login/oidc/op":
            state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
            verifier = secrets.token_urlsafe(40)
            self.pending[state] = (nonce, verifier)
            challenge = jwt.utils.base64url_encode(hashlib.sha256(verifier.encode()).digest()).decode()
            params = {
                "client_id": "rp",
                "response_type": "code",
                "scope": "openid email profile",
                "redirect_uri": self.callback,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            return 302, {"Location": f"{meta['authorization_endpoint']}?{urlencode(params)}"}, ""
        if path == "/login/oidc/op/callback":
            if (
                self.fail_callbacks
                or query.get("state") not in self.pending
                or query.get("iss") != self.provider.issuer
            ):
                return 400, {}, "bad callback"
            nonce, verifier = self.pending.pop(query["state"])
            form = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": self.callback}
            form["code_verifier"] = verifier
            resp = requests.post(meta["token_endpoint"], data=form, auth=("rp", "rp-secret"), timeout=5)
            claims = verified_claims(self.provider, resp.json()["id_token"], "rp")
            if claims["nonce"] != nonce:
                return 400, {}, "bad nonce"
            sid = secrets.token_urlsafe(8)
            self.sessions[sid] = {**claims, "id_token": resp.json()["id_token"]}
            return 302, {"Location": "/home", "Set-Cookie": f"rp_session={sid}; Path=/; HttpOnly"}, ""
        if path == "/home":
            if cookie not in self.sessions:
                return 401, {}, "who are you?"
            return 200, {"Content-Type": "text/plain"}, f"hello {self.sessions[cookie]['email']}"
        if path == "/logout":
            claims = self.sessions.pop(cookie)
            params = {"id_token_hint": claims["id_token"], "post_logout_redirect_uri": f"{self.origin}/login"}
            return 302, {"Location": f"{meta['end_session_endpoint']}?{urlencode(params)}"}, ""
        if path == "/login":
            return 200, {"Content-Type": "text/plain"}, "signed out"
        return 404, {}, "not found"


@pytest.fixture(scope="module")
def tiny_rp() -> Iterator[TinyRelyingParty]:
    port = free_port()
    client = {
        "client_id": "rp",
        "client_secret": "rp-secret",
        "redirect_uris": [f"http://127.0.0.1:{port}/login/oidc/op/callback"],
        "post_logout_redirect_uris": [f"http://127.0.0.1:{port}/login"],
    }
    with OidcProvider("solo", [client]) as provider:
        rp = TinyRelyingParty(provider, port)
        thread = threading.Thread(target=rp.server.serve_forever, daemon=True)
        thread.start()
        yield rp
        rp.server.shutdown()
        rp.server.server_close()
        thread.join()
    assert not provider.running


def _signed_in_through_form(resp: requests.Response) -> bool:
    return any("/interaction/" in hop.url and hop.request.method == "GET" for hop in resp.history)


def test_login_and_logout_round_trips(tiny_rp):
    with requests.Session() as browser:
        resp = login_round_trip(browser, f"{tiny_rp.origin}/login/oidc/op", login="carol")
        assert (resp.status_code, resp.text, resp.url) == (200, "hello carol@example.com", f"{tiny_rp.origin}/home")
        assert _signed_in_through_form(resp)
        assert "_session" in browser.cookies  # the provider's cookie, on 127.0.0.1 like the portal's

        again = login_round_trip(browser, f"{tiny_rp.origin}/login/oidc/op", login="ignored")
        assert again.text == "hello carol@example.com"
        assert not _signed_in_through_form(again)  # single sign-on at the provider

        out = logout_round_trip(browser, f"{tiny_rp.origin}/logout")
        assert (out.status_code, out.text, out.url) == (200, "signed out", f"{tiny_rp.origin}/login")
        assert any(hop.url.startswith(tiny_rp.provider.metadata["end_session_endpoint"]) for hop in out.history)

        fresh = login_round_trip(browser, f"{tiny_rp.origin}/login/oidc/op", login="dave")
        assert fresh.text == "hello dave@example.com"
        assert _signed_in_through_form(fresh)  # the provider's session ended too


def test_stop_at_callback_and_a_failing_callback_is_returned(tiny_rp):
    with requests.Session() as browser:
        resp = login_round_trip(browser, f"{tiny_rp.origin}/login/oidc/op", stop_at_callback=True)
        assert resp.status_code in (302, 303)
        location = resp.headers["Location"]
        assert location.startswith(tiny_rp.callback + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["iss"] == [tiny_rp.provider.issuer]
        assert {"code", "state"} <= set(query)
        assert browser.get(location, allow_redirects=False, timeout=5).status_code == 302
        assert browser.get(location, allow_redirects=False, timeout=5).status_code == 400  # replayed

        tiny_rp.fail_callbacks = True
        try:
            failed = login_round_trip(browser, f"{tiny_rp.origin}/login/oidc/op")
        finally:
            tiny_rp.fail_callbacks = False
        assert (failed.status_code, failed.text) == (400, "bad callback")
        assert failed.url.startswith(tiny_rp.callback)


# -- process hygiene ----------------------------------------------------------------------


def test_a_port_in_use_fails_fast_with_stderr():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        provider = OidcProvider("clash", port=taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot listen"):
            provider.start()
        assert time.monotonic() - started < 10
        assert not provider.running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init to reap it is dead
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_provider_dies_with_a_killed_test_process(tmp_path):
    script = (
        "import time\n"
        "from tests.oidc.provider import OidcProvider\n"
        "provider = OidcProvider('orphan').start()\n"
        "print(provider.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the killed parent leaves its provider's log folder
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        node_pid = int(parent.stdout.readline())
        assert _alive(node_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 5
    while _alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(node_pid):
        os.kill(node_pid, signal.SIGKILL)
        pytest.fail("the provider outlived the process that started it")
