"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording every message it accepts.

Use it in a test module::

    @pytest.fixture
    def smtp_server():
        with SmtpServer() as server:
            yield server

    @pytest.fixture
    def app_config(smtp_server):   # the server must exist before the app reads its config
        return smtp_server.app_config()

``stop()`` and ``start()`` simulate an outage (same port, so the app's config stays right);
``reject[address] = "550 ..."`` makes the server refuse one recipient (each refusal is
counted in ``refused``); ``stall[address] = seconds`` makes it think that long before
answering one recipient; ``hang_up_after_data`` closes each connection after a message;
``busy = "421 ..."`` answers every ``MAIL FROM`` with that.
``UnavailableServer`` answers every connection with 421 and hangs up, counting them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port nobody listens on right now (aiosmtpd cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordingHandler:
    """aiosmtpd handler: keeps each accepted envelope; refuses the recipients in ``reject``."""

    def __init__(self):
        self.envelopes: list = []
        self.reject: dict[str, str] = {}
        self.refused: list[str] = []  # each recipient refused, once per refusal
        self.stall: dict[str, float] = {}
        self.delay = 0.0  # seconds to think before accepting DATA (makes workers overlap)
        self.hang_up_after_data = False  # as servers with a per-connection message limit do
        self.busy: str | None = None
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.busy:
            return self.busy
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.stall:
            await asyncio.sleep(self.stall[address])
        if address in self.reject:
            with self.lock:
                self.refused.append(address)
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.envelopes.append(envelope)
        if self.hang_up_after_data:
            # Runs after the reply below has been written: the client sees 250, then EOF.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on a free port of 127.0.0.1 that can be stopped and started again.

    ``login=(user, password)`` requires AUTH; ``tls_context`` offers STARTTLS and then
    requires it (and AUTH only after it).
    """

    host = "127.0.0.1"

    def __init__(self, login: tuple[str, str] | None = None, tls_context: ssl.SSLContext | None = None):
        self.port = free_port()
        self.handler = RecordingHandler()
        self.login = login
        self.tls_context = tls_context
        self.logins: list[str] = []
        self._controller: Controller | None = None

    def app_config(self, **overrides) -> dict:
        """Config for ``make_test_app`` that points the portal at this server."""
        config = {"SMTP_HOST": self.host, "SMTP_PORT": self.port, "SMTP_TIMEOUT": 5,
                  "SMTP_STARTTLS": False, "SMTP_USERNAME": None, "SMTP_PASSWORD": None}
        config.update(overrides)
        return config

    def start(self) -> None:
        if self._controller is not None:
            return
        kwargs: dict = {}
        if self.login is not None:
            kwargs.update(auth_required=True, authenticator=self._authenticate,
                          auth_require_tls=self.tls_context is not None)
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        # Our own loop, so that we can close it (an unclosed loop warns, and warnings fail tests).
        controller = Controller(self.handler, hostname=self.host, port=self.port,
                                loop=asyncio.new_event_loop(), **kwargs)
        try:
            controller.start()
        except BaseException:
            controller.loop.close()
            raise
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
            controller.loop.close()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and self.login is not None:
            login = auth_data.login.decode(), auth_data.password.decode()
            if login == self.login:
                self.logins.append(login[0])
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def envelopes(self) -> list:
        with self.handler.lock:
            return list(self.handler.envelopes)

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted message, parsed, in the order received."""
        return [message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
                for envelope in self.envelopes]

    @property
    def message_ids(self) -> list[str]:
        return [message["Message-ID"] for message in self.messages]

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class UnavailableServer:
    """A TCP server on 127.0.0.1 that answers every connection with 421 and hangs up.

    An SMTP server that is up but refuses service (overloaded, shutting down); ``connections``
    counts how often a client asked.
    """

    host = "127.0.0.1"
    greeting = b"421 4.3.2 Service not available, closing transmission channel\r\n"

    def __init__(self):
        self._socket = socket.create_server((self.host, 0))
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            with conn:
                self.connections += 1
                conn.sendall(self.greeting)

    def __enter__(self) -> UnavailableServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def self_signed_tls(directory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 and the path of its certificate (the client's CA file)."""
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)
