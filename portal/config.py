"""Configuration defaults. Secrets never have a default here (see ``create_app``)."""

from datetime import timedelta


class Defaults:
    # Database: an SQLite file in the instance folder unless PORTAL_DATABASE_URL is set.
    DATABASE_URL: str | None = None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}

    BASE_URL = "http://127.0.0.1:5000"
    # Behind a reverse proxy or load balancer: how many proxies set X-Forwarded-For/-Proto/-Host
    # (then client addresses, rate limits and OIDC redirect URIs see the real client and scheme).
    PROXY_HOPS = 0
    # CSRF tokens are tied to the session; they need no clock of their own shorter than it.
    WTF_CSRF_TIME_LIMIT = None
    LOCAL_LOGIN_ENABLED = False
    OIDC_PROVIDERS: dict = {}

    # Sessions: the signed cookie holds the user id and its session version.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    SESSION_IDLE_TIMEOUT = timedelta(hours=2)
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    # The cookie is signed and sent again only when the session changed (its last-seen time
    # moves on once a minute, see auth_session), not on every response. The browser keeps it
    # for PERMANENT_SESSION_LIFETIME after that, never less than the session's own lifetime.
    SESSION_REFRESH_EACH_REQUEST = False

    # Mail goes through the outbox; the worker delivers it over SMTP.
    SMTP_HOST = "127.0.0.1"
    SMTP_PORT = 25
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_STARTTLS = False
    SMTP_TIMEOUT = 10
    MAIL_FROM = "Entitlement Portal <portal@localhost>"
    SMTP_CA_FILE: str | None = None  # CA bundle for STARTTLS to a server with a private CA
    # Retries double from 30 s up to an hour: 12 attempts ride out about 6 hours of outage.
    OUTBOX_MAX_ATTEMPTS = 12
    OUTBOX_BACKOFF_SECONDS = 30
    OUTBOX_BACKOFF_MAX_SECONDS = 3600
    OUTBOX_LEASE_SECONDS = 900  # a claimed mail is not due for other workers meanwhile

    # Abuse limits (Flask-Limiter). memory:// counts in each process; several processes or hosts
    # count together only through a shared store: RATELIMIT_STORAGE_URI = "redis://host:6379/0".
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_KEY_PREFIX = "portal"  # keys in a shared Redis: LIMITS:LIMITER/portal/...
    # Failed sign-ins from one client address (all accounts together): that address waits.
    LOGIN_FAILURE_LIMIT = "10 per minute"
    # Failed sign-ins for one account from all addresses together: then addresses that failed
    # for it wait; an address that has not failed for it may still sign in (no lock-out).
    LOGIN_ACCOUNT_FAILURE_LIMIT = "50 per hour"

    # License certificates are signed with this Ed25519 key (made on first use).
    SIGNING_KEY_FILE = "signing-key.pem"
    LICENSE_VALIDITY_DAYS = 365

    # Request bodies. Forms are small: beyond MAX_CONTENT_LENGTH the answer is 413 before a byte
    # is read. In a multipart body the text fields hold at most MAX_FORM_MEMORY_SIZE and there
    # are at most MAX_FORM_PARTS parts (Werkzeug enforces both; files go to temporary files).
    # A view that takes file uploads is marked ``@accepts_upload`` (portal/web.py) and gets
    # UPLOAD_MAX_CONTENT_LENGTH instead of MAX_CONTENT_LENGTH; nothing else does.
    MAX_CONTENT_LENGTH = 1024 * 1024
    MAX_FORM_MEMORY_SIZE = 500 * 1024
    MAX_FORM_PARTS = 1000
    UPLOAD_MAX_CONTENT_LENGTH = 512 * 1024 * 1024

    RELEASE_FILES_DIR = "files"
    PAGE_SIZE = 25
