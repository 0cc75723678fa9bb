"""Two real app servers (two gunicorn processes) behind one Redis: limits and sessions are shared.

Each process has its own Flask-Limiter storage object, so a limit that holds across them can
only come from Redis; the tests look in Redis for the counters.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.factories import PASSWORD

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_redis() -> Iterator[tuple[redis.Redis, str]]:
    """The Redis client and a key prefix of this test's own; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("PORTAL_REQUIRE_POSTGRES"):
            raise
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex}"
    yield client, prefix
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


def redis_counters(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Every rate-limit counter under ``prefix``, by key (without Redis's own key prefix)."""
    return {key.split(":", 1)[1]: int(client.get(key)) for key in client.scan_iter(match=f"*/{prefix}/*")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if requests.get(f"{url}/login", timeout=10).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or the worker still booting
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within 30 s")


@pytest.fixture
def alice(make):
    customer = make.customer("Contoso")
    return make.user(customer, "admin", email="alice@contoso.com", password=PASSWORD)


@pytest.fixture
def two_instances(database_url, signing_key_dir, shared_redis, alice) -> Iterator[list[str]]:
    """Two gunicorn processes on their own ports, configured only through PORTAL_* variables."""
    _, prefix = shared_redis
    env = os.environ | {
        "PYTHONPATH": str(REPO_ROOT),
        "PORTAL_SECRET_KEY": "shared-instances-secret",
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(signing_key_dir),
        "PORTAL_LOCAL_LOGIN_ENABLED": "true",
        "PORTAL_WTF_CSRF_ENABLED": "false",
        "PORTAL_RATELIMIT_STORAGE_URI": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": prefix,
    }
    processes, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                 "--no-control-socket", "--log-level", "warning", "wsgi:app"],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True,
            ))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            _wait_until_serving(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stderr.close()


def _sign_in(url: str, password: str) -> requests.Response:
    return requests.post(f"{url}/login", data={"email": "alice@contoso.com", "password": password},
                         allow_redirects=False, timeout=10)


def test_failed_sign_ins_are_counted_in_redis_across_instances(two_instances, shared_redis):
    client, prefix = shared_redis
    for attempt in range(10):
        response = _sign_in(two_instances[attempt % 2], "wrong password!")
        assert response.status_code == 401, attempt
    # Neither process alone has seen more than 5 failures: only a shared counter stops the 11th.
    blocked = _sign_in(two_instances[10 % 2], "wrong password!")
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 60
    account = hashlib.sha256(b"alice@contoso.com").hexdigest()[:32]
    counters = redis_counters(client, prefix)
    assert counters == {
        f"LIMITER/{prefix}/127.0.0.1/auth.login/10/1/minute": 10,  # this address, any account
        f"LIMITER/{prefix}/login-account/{account}/50/1/hour": 10,  # this account, all addresses
        f"LIMITER/{prefix}/login-account-address/{account}/127.0.0.1/50/1/hour": 10,
    }
    # The counters expire with their window.
    assert all(0 < client.ttl(f"LIMITS:{key}") <= 3600 for key in counters)


def test_a_sign_out_on_one_instance_ends_the_session_on_the_other(two_instances):
    first, second = two_instances
    signed_in = _sign_in(first, PASSWORD)
    assert signed_in.status_code == 302
    cookie = {"portal_session": signed_in.cookies["portal_session"]}
    assert requests.get(f"{second}/customer/", cookies=cookie, allow_redirects=False, timeout=10).status_code == 200
    signed_out = requests.post(f"{first}/logout", cookies=cookie, allow_redirects=False, timeout=10)
    assert signed_out.status_code == 302
    replay = requests.get(f"{second}/customer/", cookies=cookie, allow_redirects=False, timeout=10)
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")
