"""A real OpenID Connect provider for tests: ``tests/oidc/provider.mjs`` (npm ``oidc-provider``).

Needs Node and ``npm ci`` (``make setup``). Nothing is mocked: the provider issues real,
signed ID tokens on ``http://127.0.0.1:<free port>``.

The provider
    authorization code flow only, PKCE S256 required, confidential clients; any login name
    (any password) signs in and becomes ``sub``; the ID token carries ``email``
    (``<login>@example.com``, or the login itself when it contains "@"), ``email_verified``
    (true) and ``name`` ("alice" -> "Alice", "bob.smith@x.test" -> "Bob Smith"); no consent
    page; RFC 9207 ``iss`` in every authorization response; RP-initiated logout
    (``end_session_endpoint``, which shows a confirmation form); a fresh RSA key per process,
    so two providers never accept each other's tokens. Its cookies are ``_session``,
    ``_interaction``, ``_interaction_resume`` on 127.0.0.1: cookies ignore ports, so the portal
    must not use these names.

Fixtures (session-scoped; import them, or list this module in ``pytest_plugins``)
    ``portal_port`` -> int
        ``PORTAL_TEST_PORT``: the port the live portal must listen on (127.0.0.1), chosen once
        per test process (``PORTAL_TEST_PORT`` in the environment overrides it).
    ``oidc_providers`` -> dict[str, OidcProvider]
        ``{"alpha": ..., "beta": ...}``, started in parallel, stopped at the end of the session.
        Each has the clients ``portal``/``portal-secret`` (client_secret_basic, Authlib's
        default) and ``other-app``/``other-secret`` (client_secret_post), both registered with
        every URI of ``redirect_uris(portal_port)`` (``REDIRECT_URIS``): the callbacks
        ``/login/oidc/alpha/callback`` and ``/login/oidc/beta/callback`` on
        ``http://127.0.0.1:{portal_port}``, ``http://localhost`` (the Flask test client) and
        ``http://127.0.0.1:5000`` (the tests' default BASE_URL), and with the post-logout URIs
        ``/login`` and ``/`` on the same origins (``POST_LOGOUT_REDIRECT_URIS``). Both providers
        accept both callbacks, so a test can deliver one provider's code to the other's callback.

``OidcProvider(name="op", clients=(), port=None, cookie_prefix="")``
    Context manager (or ``start()``/``stop()``): starts ``node tests/oidc/provider.mjs``, waits
    (15 s at most) until discovery answers, fails with the process's stderr. Attributes
    ``name``, ``port``, ``issuer``, ``discovery_url``, ``metadata`` (the discovery document),
    ``clients``; ``jwks()``, ``client(client_id)``, ``stderr()``;
    ``portal_config(name=None, client_id="portal", client_secret="portal-secret",
    display_name=None)`` -> ``{"display_name", "server_metadata_url", "client_id",
    "client_secret"}``. A provider never outlives the test process: ``stop()`` at the end,
    an ``atexit`` hook, and the provider exits by itself when its stdin (a pipe from this
    process) closes, even after a SIGKILL.

Helpers
    ``login_round_trip(session, start_url, login="alice", password="x", *, data=None,
    stop_at_callback=False) -> requests.Response``
        GET ``start_url`` (POST ``data`` when given) with a ``requests.Session``, follow to the
        provider's login form, sign in, and land back: returns the portal's final response,
        following the portal's own redirects after the callback but never back to a provider
        (so a failed callback's response is what you get). ``stop_at_callback=True`` returns the
        provider's redirect to the callback instead (``Location`` carries ``code``, ``state``,
        ``iss``): use it with the Flask test client (``client.get(resp.headers["Location"])``)
        and to replay or alter a callback. ``start_url`` may also be a provider authorization
        URL. Every hop is in ``response.history``.
    ``logout_round_trip(session, start_url) -> requests.Response``
        GET the portal's logout URL, confirm the provider's sign-out form, land back.
    ``authorize_code(provider, client_id, client_secret, redirect_uri, nonce, login="alice",
    *, scope="openid email profile", password="x", auth_method=None) -> dict``
        A full code flow with PKCE against the provider alone (no portal); returns the token
        response (``id_token``, ``access_token``, ...). For a real ID token issued to another
        audience (``other-app``) or with another nonce.
    ``authorization_response(provider, client_id, redirect_uri, nonce, login="alice", *,
    scope=SCOPE, password="x", state=None, session=None)``
        -> ``AuthorizationResponse(location, code, state, iss, code_verifier)``: the same flow,
        stopped before the token request (in ``session`` if given, else a fresh one).
    ``free_port()``, ``redirect_uris(portal_port)``, ``post_logout_redirect_uris(portal_port)``,
    ``callback_url(name, origin)``; constants ``PORTAL_TEST_PORT``, ``PROVIDER_NAMES``,
    ``REDIRECT_URIS``, ``POST_LOGOUT_REDIRECT_URIS``, ``PORTAL_CLIENT_ID``,
    ``PORTAL_CLIENT_SECRET``, ``OTHER_CLIENT_ID``, ``OTHER_CLIENT_SECRET``, ``SCOPE``.

Using the fixtures: list this module in the root conftest (``pytest_plugins =
["tests.oidc.provider"]``, without importing it there first), or import them into a test module
under their function names (pytest registers them by their ``name=``)::

    from tests.oidc.provider import oidc_providers_fixture, portal_port_fixture  # noqa: F401

Typical portal tests (``OIDC_PROVIDERS`` and ``live_portal`` stand for whatever the portal uses)::

    @pytest.fixture
    def app_config(oidc_providers):
        return {"OIDC_PROVIDERS": {name: p.portal_config() for name, p in oidc_providers.items()}}

    def test_sign_in(live_portal):            # the portal served on 127.0.0.1:{portal_port}
        with requests.Session() as browser:
            resp = login_round_trip(browser, f"{live_portal}/login/oidc/alpha", login="carol")

    def test_wrong_nonce(live_portal):        # tamper with the portal's authorization request
        with requests.Session() as browser:
            start = browser.get(f"{live_portal}/login/oidc/alpha", allow_redirects=False)
            url = start.headers["Location"].replace("nonce=", "nonce=evil", 1)
            resp = login_round_trip(browser, url)   # the provider's real ID token, nonce "evil..."

    def test_with_the_flask_test_client(client):
        start = client.get("/login/oidc/alpha")
        with requests.Session() as browser:
            back = login_round_trip(browser, start.headers["Location"], stop_at_callback=True)
        resp = client.get(back.headers["Location"])   # http://localhost/login/oidc/alpha/callback?...
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = Path(__file__).resolve().with_name("provider.mjs")
STARTUP_TIMEOUT = 15.0

SCOPE = "openid email profile"
ANY_PASSWORD = "x"  # the development login form accepts any password
PROVIDER_NAMES = ("alpha", "beta")
PORTAL_CLIENT_ID = "portal"
PORTAL_CLIENT_SECRET = "portal-secret"
OTHER_CLIENT_ID = "other-app"
OTHER_CLIENT_SECRET = "other-secret"

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, never the same one twice in this process."""
    with _port_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


PORTAL_TEST_PORT: int = int(os.environ.get("PORTAL_TEST_PORT") or free_port())
_handed_out.add(PORTAL_TEST_PORT)


def portal_origins(portal_port: int = PORTAL_TEST_PORT) -> list[str]:
    """Where the portal may run in tests: the live server, the Flask test client, the default BASE_URL."""
    return list(dict.fromkeys([f"http://127.0.0.1:{portal_port}", "http://localhost", "http://127.0.0.1:5000"]))


def callback_url(name: str, origin: str) -> str:
    return f"{origin}/login/oidc/{name}/callback"


def redirect_uris(portal_port: int = PORTAL_TEST_PORT, names: Iterable[str] = PROVIDER_NAMES) -> list[str]:
    return [callback_url(name, origin) for origin in portal_origins(portal_port) for name in names]


def post_logout_redirect_uris(portal_port: int = PORTAL_TEST_PORT) -> list[str]:
    return [f"{origin}{path}" for origin in portal_origins(portal_port) for path in ("/login", "/")]


REDIRECT_URIS: list[str] = redirect_uris()
POST_LOGOUT_REDIRECT_URIS: list[str] = post_logout_redirect_uris()


def fixture_clients(portal_port: int = PORTAL_TEST_PORT) -> list[dict]:
    """The two clients every fixture provider has."""
    common = {
        "redirect_uris": redirect_uris(portal_port),
        "post_logout_redirect_uris": post_logout_redirect_uris(portal_port),
    }
    return [
        {
            "client_id": PORTAL_CLIENT_ID,
            "client_secret": PORTAL_CLIENT_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            **common,
        },
        {
            "client_id": OTHER_CLIENT_ID,
            "client_secret": OTHER_CLIENT_SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            **common,
        },
    ]


# Origins ("http://127.0.0.1:port") of the providers running in this process: how the
# round-trip helpers tell the provider's pages from the portal's.
_provider_origins: set[str] = set()
_running: set[OidcProvider] = set()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _is_provider(url: str) -> bool:
    return _origin(url) in _provider_origins


class OidcProvider:
    """One ``node tests/oidc/provider.mjs`` process; see the module docstring."""

    def __init__(
        self, name: str = "op", clients: Iterable[dict] = (), port: int | None = None, cookie_prefix: str = ""
    ):
        self.name = name
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.clients = [dict(client) for client in clients]
        self.cookie_prefix = cookie_prefix
        self.metadata: dict = {}
        self.process: subprocess.Popen | None = None
        self._logdir: Path | None = None
        self._stderr_text = ""

    def __repr__(self) -> str:
        return f"<OidcProvider {self.name} {self.issuer}>"

    # -- lifecycle -------------------------------------------------------------------------

    def launch(self) -> OidcProvider:
        """Start the process without waiting for it (``wait_ready()`` next)."""
        if self.process is not None:
            raise RuntimeError(f"{self!r} already started")
        if not (REPO_ROOT / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("node_modules/oidc-provider is missing: run `npm ci` (or `make setup`)")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: the test OIDC provider needs Node.js")
        config = {
            "port": self.port,
            "issuer": self.issuer,
            "clients": self.clients,
            "cookie_prefix": self.cookie_prefix,
            "exit_with_stdin": True,
        }
        self._logdir = Path(tempfile.mkdtemp(prefix=f"oidc-{self.name}-"))
        with open(self._logdir / "stdout", "ab") as out, open(self._logdir / "stderr", "ab") as err:
            self.process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT)],
                cwd=REPO_ROOT,
                env={**os.environ, "OIDC_TEST_CONFIG": json.dumps(config)},
                stdin=subprocess.PIPE,  # the provider exits when this pipe closes (we died)
                stdout=out,
                stderr=err,
            )
        _running.add(self)
        _provider_origins.add(_origin(self.issuer))
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> OidcProvider:
        """Wait for ``READY`` and an answer from discovery; on failure stop and raise with stderr."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self!r} exited with {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self!r} did not answer {self.discovery_url} within {timeout:.0f} s")
                if f"READY {self.issuer}" in self._read("stdout"):
                    with contextlib.suppress(requests.RequestException, ValueError):
                        resp = requests.get(self.discovery_url, timeout=2)
                        if resp.status_code == 200 and resp.json().get("issuer") == self.issuer:
                            self.metadata = resp.json()
                            return self
                time.sleep(0.02)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}; its stderr:\n{self.stderr()}") from None
            raise

    def start(self, timeout: float = STARTUP_TIMEOUT) -> OidcProvider:
        return self.launch().wait_ready(timeout)

    def stop(self) -> None:
        """Terminate (then kill) the process and wait for it; idempotent."""
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None and process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self._logdir is not None:
            self._stderr_text = self._read("stderr")
            shutil.rmtree(self._logdir, ignore_errors=True)
            self._logdir = None
        _running.discard(self)
        _provider_origins.discard(_origin(self.issuer))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _read(self, stream: str) -> str:
        if self._logdir is None:
            return ""
        try:
            return (self._logdir / stream).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self) -> str:
        """What the provider wrote to stderr so far (warnings, logged errors)."""
        return self._read("stderr") if self._logdir is not None else self._stderr_text

    # -- data ------------------------------------------------------------------------------

    def client(self, client_id: str) -> dict:
        for client in self.clients:
            if client["client_id"] == client_id:
                return client
        raise KeyError(f"{self!r} has no client {client_id!r}")

    def jwks(self) -> dict:
        resp = requests.get(self.metadata["jwks_uri"], timeout=5)
        resp.raise_for_status()
        return resp.json()

    def portal_config(
        self,
        name: str | None = None,
        client_id: str = PORTAL_CLIENT_ID,
        client_secret: str = PORTAL_CLIENT_SECRET,
        display_name: str | None = None,
    ) -> dict:
        """The portal's configuration entry for this provider."""
        return {
            "display_name": display_name or (name or self.name).title(),
            "server_metadata_url": self.discovery_url,
            "client_id": client_id,
            "client_secret": client_secret,
        }


@atexit.register
def _stop_all() -> None:
    for provider in list(_running):
        provider.stop()


# -- driving the provider's pages ---------------------------------------------------------


@dataclass
class _Form:
    action: str
    form_id: str | None
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self._current = _Form(attributes.get("action") or "", attributes.get("id"))
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attributes.get("name"):
            self._current.fields[attributes["name"]] = attributes.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def _forms(html: str) -> list[_Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def _provider_step(resp: requests.Response, login: str, password: str) -> tuple[str, dict] | None:
    """The POST that answers a provider page (login form, consent, logout confirmation), if any."""
    if not _is_provider(resp.url) or resp.status_code != 200 or "html" not in resp.headers.get("Content-Type", ""):
        return None
    for form in _forms(resp.text):
        action = urljoin(resp.url, form.action)
        prompt = form.fields.get("prompt")
        if prompt == "login":
            return action, {**form.fields, "prompt": "login", "login": login, "password": password}
        if prompt == "consent":
            return action, {**form.fields, "prompt": "consent"}
        if form.form_id == "op.logoutForm":
            return action, {**form.fields, "logout": "yes"}
    return None


def _drive(
    session: requests.Session,
    start_url: str,
    login: str,
    password: str,
    data: dict | None = None,
    stop_at_callback: bool = False,
    max_hops: int = 25,
) -> requests.Response:
    history: list[requests.Response] = []
    if data is None:
        resp = session.get(start_url, allow_redirects=False, timeout=10)
    else:
        resp = session.post(start_url, data=data, allow_redirects=False, timeout=10)
    came_back = False  # the provider has sent us back to the portal
    for _ in range(max_hops):
        if resp.is_redirect:
            target = urljoin(resp.url, resp.headers["Location"])
            if _is_provider(resp.url) and not _is_provider(target):
                if stop_at_callback:
                    break
                came_back = True
            elif _is_provider(target) and came_back:
                break  # the portal sends us to a provider again: let the test look at it
            history.append(resp)
            resp = session.get(target, allow_redirects=False, timeout=10)
            continue
        step = _provider_step(resp, login, password)
        if step is None:
            break
        history.append(resp)
        resp = session.post(step[0], data=step[1], allow_redirects=False, timeout=10)
    else:
        raise RuntimeError(f"more than {max_hops} hops from {start_url}: " + " -> ".join(r.url for r in history))
    resp.history = history
    return resp


def login_round_trip(
    session: requests.Session,
    start_url: str,
    login: str = "alice",
    password: str = ANY_PASSWORD,
    *,
    data: dict | None = None,
    stop_at_callback: bool = False,
) -> requests.Response:
    """Sign in through a running fixture provider and land back on the portal (module docstring)."""
    return _drive(session, start_url, login, password, data=data, stop_at_callback=stop_at_callback)


def logout_round_trip(session: requests.Session, start_url: str, *, data: dict | None = None) -> requests.Response:
    """Follow the portal's logout to the provider's end_session page, confirm it, land back."""
    return _drive(session, start_url, "", "", data=data)


@dataclass
class AuthorizationResponse:
    location: str
    code: str
    state: str
    iss: str | None
    code_verifier: str


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def authorization_response(
    provider: OidcProvider,
    client_id: str,
    redirect_uri: str,
    nonce: str | None,
    login: str = "alice",
    *,
    scope: str = SCOPE,
    password: str = ANY_PASSWORD,
    state: str | None = None,
    session: requests.Session | None = None,
) -> AuthorizationResponse:
    """A code flow with PKCE against ``provider`` alone, up to the redirect to ``redirect_uri``."""
    verifier = secrets.token_urlsafe(48)
    state = state or secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": scope,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
        "code_challenge_method": "S256",
    }
    if nonce is not None:
        params["nonce"] = nonce
    url = f"{provider.metadata['authorization_endpoint']}?{urlencode(params)}"
    if session is not None:
        resp = _drive(session, url, login, password, stop_at_callback=True)
    else:
        with requests.Session() as browser:
            resp = _drive(browser, url, login, password, stop_at_callback=True)
    location = resp.headers.get("Location", "") if resp.is_redirect else ""
    if not location.startswith(redirect_uri):
        raise AssertionError(
            f"{provider!r} did not redirect to {redirect_uri}: {resp.status_code} {location or resp.text[:500]}"
        )
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    if "code" not in query:
        raise AssertionError(f"{provider!r} answered with an error: {location}")
    if query.get("state") != state:
        raise AssertionError(f"state mismatch in {location}")
    return AuthorizationResponse(location, query["code"], state, query.get("iss"), verifier)


def authorize_code(
    provider: OidcProvider,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    nonce: str | None,
    login: str = "alice",
    *,
    scope: str = SCOPE,
    password: str = ANY_PASSWORD,
    auth_method: str | None = None,
) -> dict:
    """A full code flow (PKCE) against the provider alone; returns the token response."""
    auth = authorization_response(provider, client_id, redirect_uri, nonce, login, scope=scope, password=password)
    form = {
        "grant_type": "authorization_code",
        "code": auth.code,
        "redirect_uri": redirect_uri,
        "code_verifier": auth.code_verifier,
    }
    if auth_method is None:
        try:
            auth_method = provider.client(client_id).get("token_endpoint_auth_method", "client_secret_basic")
        except KeyError:
            auth_method = "client_secret_basic"
    basic = None
    if auth_method == "client_secret_basic":
        basic = (quote(client_id, safe=""), quote(client_secret, safe=""))
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    resp = requests.post(provider.metadata["token_endpoint"], data=form, auth=basic, timeout=10)
    if resp.status_code != 200:
        raise AssertionError(f"token request to {provider!r} failed: {resp.status_code} {resp.text}")
    return resp.json()


# -- fixtures -----------------------------------------------------------------------------

_session_providers: dict[str, OidcProvider] = {}


def start_test_providers(
    portal_port: int = PORTAL_TEST_PORT, names: Iterable[str] = PROVIDER_NAMES
) -> dict[str, OidcProvider]:
    """Start (once per process) the named providers with the two test clients, in parallel."""
    names = tuple(names)
    if set(_session_providers) == set(names) and all(p.running for p in _session_providers.values()):
        return dict(_session_providers)
    stop_test_providers()
    providers = {name: OidcProvider(name, fixture_clients(portal_port)) for name in names}
    try:
        for provider in providers.values():
            provider.launch()
        for provider in providers.values():
            provider.wait_ready()
    except BaseException:
        for provider in providers.values():
            provider.stop()
        raise
    _session_providers.update(providers)
    return dict(providers)


def stop_test_providers() -> None:
    for provider in _session_providers.values():
        provider.stop()
    _session_providers.clear()


@pytest.fixture(scope="session", name="portal_port")
def portal_port_fixture() -> int:
    """The port the live portal listens on in OIDC tests (registered in the redirect URIs)."""
    return PORTAL_TEST_PORT


@pytest.fixture(scope="session", name="oidc_providers")
def oidc_providers_fixture(portal_port) -> Iterator[dict[str, OidcProvider]]:
    """``{"alpha": OidcProvider, "beta": OidcProvider}`` for the whole session."""
    yield start_test_providers(portal_port)
    stop_test_providers()
