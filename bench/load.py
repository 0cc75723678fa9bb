"""Servers and load: gunicorn processes, sign-in, a sequential client, and wrk at 8 connections."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gunicorn(name: str, target: str, env: dict[str, str], *, workers: int = 2) -> Server:
    """Start ``gunicorn -w 2`` with the bench configuration and wait until it answers /healthz."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "gunicorn"), "-w", str(workers), "-b", f"{HOST}:{port}",
               "-c", str(ROOT / "bench" / "gunicorn_conf.py"), "--chdir", str(ROOT), target]
    process = subprocess.Popen(command, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)  # noqa: S603
    server = Server(name, port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name}: gunicorn exited with {process.returncode}")
        try:
            if request(port, "/healthz").status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name}: gunicorn did not answer within 60 s")


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float
    first_byte: float = 0.0  # seconds until the status line and headers arrived (with the first piece)


def request(port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Response:
    """One request on a new connection (gunicorn's sync workers close after each answer)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        first_byte = time.perf_counter() - started
        data = answer.read()
        seconds = time.perf_counter() - started
        return Response(answer.status, answer.headers, data, seconds, first_byte)
    finally:
        connection.close()


def _cookies(response: Response) -> dict[str, str]:
    found = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def sign_in(port: int, email: str, password: str) -> str:
    """POST /login like a browser (CSRF token and all); returns the Cookie header to send."""
    page = request(port, "/login")
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page.body)
    cookies = _cookies(page)
    form = {"email": email, "password": password, "next": ""}
    if token:
        form["csrf_token"] = token.group(1).decode()
    answer = request(port, "/login", method="POST", body=urlencode(form).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
    })
    if answer.status != 302:
        raise RuntimeError(f"sign-in as {email} answered {answer.status}")
    cookies.update(_cookies(answer))
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


@dataclass
class Timing:
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    queries: set[int] = field(default_factory=set)
    first_bytes: list[float] = field(default_factory=list)
    rows: int = 0  # data rows of a CSV answer (the last one's)

    def percentile(self, p: float) -> float | None:
        if not self.seconds:
            return None
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p95(self) -> float | None:
        return self.percentile(95)

    @property
    def first_byte_p95(self) -> float | None:
        if not self.first_bytes:
            return None
        ordered = sorted(self.first_bytes)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000

    @property
    def rows_per_second(self) -> float:
        """CSV rows per second of the median request (0 for a page that is not a CSV)."""
        return self.rows / statistics.median(self.seconds) if self.rows and self.seconds else 0.0

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.seconds) * 1000 if self.seconds else None


def sequential(port: int, path: str, headers: dict[str, str], *, requests: int, max_seconds: float,
               warmup: int = 20) -> Timing:
    """One client, one request after the other: latency, statuses and SQL statements per request."""
    timing = Timing()
    # Warm-up and samples are capped in time too: an export of 200,000 rows takes seconds a
    # request, and 20 + 30 of those would hold the whole run up for half an hour.
    warm_until = time.monotonic() + max_seconds
    for _ in range(warmup):
        request(port, path, headers=headers)
        if time.monotonic() > warm_until:
            break
    started = time.monotonic()
    deadline = started + max_seconds
    for _ in range(requests):
        answer = request(port, path, headers=headers)
        timing.seconds.append(answer.seconds)
        timing.first_bytes.append(answer.first_byte)
        if answer.headers.get("Content-Type", "").startswith("text/csv"):
            timing.rows = max(answer.body.count(b"\n") - 1, 0)
        timing.statuses[answer.status] = timing.statuses.get(answer.status, 0) + 1
        count = answer.headers.get("X-Bench-Queries")
        if count is not None:
            timing.queries.add(int(count))
        now = time.monotonic()
        if now > deadline and (len(timing.seconds) >= 30 or now > started + 6 * max_seconds):
            break
    return timing


@dataclass
class Throughput:
    requests_per_second: float
    errors: int  # non-2xx/3xx answers and socket errors


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(port: int, path: str, headers: dict[str, str], *, seconds: float, connections: int = 8,
        runs: int = 1) -> Throughput:
    """``wrk -t2 -c8``: requests per second at 8 concurrent clients, the best of ``runs`` runs
    (on a shared machine other work only ever lowers a run's rate)."""
    results = [_wrk(port, path, headers, seconds=seconds, connections=connections) for _ in range(runs)]
    return max(results, key=lambda r: r.requests_per_second)


def wrk_beside(port: int, path: str, headers: dict[str, str], floor_port: int, floor_path: str, *,
               seconds: float, runs: int) -> tuple[Throughput, Throughput]:
    """(page, floor): runs of the two alternate, and the best of each counts."""
    pages, floors = [], []
    for _ in range(runs):
        floors.append(_wrk(floor_port, floor_path, {}, seconds=seconds, connections=8))
        pages.append(_wrk(port, path, headers, seconds=seconds, connections=8))
    best = lambda results: max(results, key=lambda r: r.requests_per_second)  # noqa: E731
    return best(pages), best(floors)


def _wrk(port: int, path: str, headers: dict[str, str], *, seconds: float, connections: int) -> Throughput:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://{HOST}:{port}{path}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        # gunicorn's sync workers close every connection: wrk counts those closes as read errors.
        errors += int(match.group(1)) + int(match.group(3)) + int(match.group(4))
    return Throughput(rate, errors)
