"""A local stand-in for the Binance and CoinGecko REST APIs, for tests.

One threaded HTTP server on 127.0.0.1 at a random port serves both APIs under their own prefix, so the real
clients run unchanged against it::

    from market_stub import make_klines, market_stub  # noqa: F401  (pytest puts tests/ on sys.path)

    def test_something(market_stub):  # the fixture: a started stub, stopped after the test
        market_stub.set_klines("BTCUSDT", make_klines(datetime(2024, 1, 1, tzinfo=UTC), 48))
        client = BinanceClient(base_url=market_stub.binance_url)
        ...

Outside pytest: ``with MarketStub() as stub: ...``. A Dagster test points the clients (or the
``CRYPTOBT_BINANCE_URL`` / ``CRYPTOBT_COINGECKO_URL`` environment variables) at ``binance_url`` /
``coingecko_url``.

Data
    ``set_klines(pair, rows)``: ``rows`` are Binance's 12-field kline lists, times in ms or µs
    (:func:`make_klines` builds them). ``GET {binance_url}/api/v3/klines`` answers like Binance: klines whose
    open time is in ``[startTime, endTime]`` (ms; either bound optional), oldest first, at most ``limit``
    (default 500; above 1000 is a 400 with code -1130); an unknown pair is a 400
    ``{"code": -1121, "msg": "Invalid symbol."}``. The stub returns rows as stored: add a candle whose
    close time is in the future to play the one still forming.

    ``set_chart(coin_id, prices, total_volumes=None, market_caps=None)``: lists of ``[ms, value]``
    (:func:`daily_chart` builds them). ``GET {coingecko_url}/coins/{id}/market_chart/range`` answers the points
    with ``from <= ms/1000 <= to`` (unix seconds) of each list; an unknown id is a 404
    ``{"error": "coin not found"}``. Append an off-grid point to play CoinGecko's live snapshot.

Faults
    ``inject(match, status=None, headers=None, body=None, delay=0.0, times=1)``: the next ``times`` requests
    whose path contains ``match`` wait ``delay`` seconds before answering (a slow server: use it for read
    timeouts), then get ``status`` with ``headers`` and ``body`` (dict/list sent as JSON) instead of the normal
    answer; with ``status=None`` the normal answer follows the delay. Faults are used in the order injected.
    E.g. ``inject("klines", status=429, headers={"Retry-After": "1"})``.

Log
    ``requests``: every request as a :class:`StubRequest` (``method, path, query, headers, at``) in arrival
    order, ``at`` from ``time.monotonic()``, query values as strings, header names lower-case.
    ``requests_to(match)`` filters by path substring. ``reset()`` forgets data, faults and log.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

BINANCE_PREFIX = "/binance"
COINGECKO_PREFIX = "/coingecko/api/v3"
CHART_PATH = re.compile(rf"^{COINGECKO_PREFIX}/coins/([^/]+)/market_chart/range$")
MICROSECONDS_FROM = 10**14


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class Fault:
    match: str
    status: int | None
    headers: dict[str, str]
    body: object
    delay: float
    times: int


class MarketStub:
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.stub = self
        # A short poll keeps shutdown (once per test) from costing the default 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="market-stub", daemon=True
        )
        host, port = self._server.server_address[:2]
        self.root_url = f"http://{host}:{port}"
        self.binance_url = self.root_url + BINANCE_PREFIX
        self.coingecko_url = self.root_url + COINGECKO_PREFIX
        self.reset()

    def start(self) -> MarketStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on a delay fault
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MarketStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.klines: dict[str, list[list]] = {}
            self.charts: dict[str, dict[str, list[list]]] = {}
            self.faults: list[Fault] = []
            self.requests: list[StubRequest] = []

    def set_klines(self, pair: str, rows: list[list]) -> None:
        with self._lock:
            self.klines[pair] = sorted(rows, key=lambda row: _to_ms(row[0]))

    def set_chart(
        self,
        coin_id: str,
        prices: list[list],
        total_volumes: list[list] | None = None,
        market_caps: list[list] | None = None,
    ) -> None:
        with self._lock:
            self.charts[coin_id] = {
                "prices": prices,
                "market_caps": market_caps or [],
                "total_volumes": total_volumes or [],
            }

    def inject(
        self,
        match: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: object = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(match, status, headers or {}, body, delay, times))

    def requests_to(self, match: str) -> list[StubRequest]:
        with self._lock:
            return [request for request in self.requests if match in request.path]

    # -- called by the handler threads

    def _record_and_take_fault(self, request: StubRequest) -> Fault | None:
        with self._lock:
            self.requests.append(request)
            for fault in self.faults:
                if fault.match in request.path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, object]:
        with self._lock:
            try:
                if path == BINANCE_PREFIX + "/api/v3/klines":
                    return self._klines(query)
                chart_path = CHART_PATH.match(path)
                if chart_path:
                    return self._chart(chart_path.group(1), query)
            except (KeyError, ValueError) as exc:
                return 400, {"error": f"missing or malformed parameter: {exc}"}
        return 404, {"error": f"no route {path}"}

    def _klines(self, query: dict[str, str]) -> tuple[int, object]:
        rows = self.klines.get(query.get("symbol", ""))
        if rows is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = int(query.get("limit", 500))
        if not 1 <= limit <= 1000:
            return 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        start = int(query.get("startTime", 0))
        end = int(query.get("endTime", 2**62))
        return 200, [row for row in rows if start <= _to_ms(row[0]) <= end][:limit]

    def _chart(self, coin_id: str, query: dict[str, str]) -> tuple[int, object]:
        chart = self.charts.get(coin_id)
        if chart is None:
            return 404, {"error": "coin not found"}
        start, end = float(query["from"]), float(query["to"])
        return 200, {name: [p for p in points if start <= p[0] / 1000 <= end] for name, points in chart.items()}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        stub: MarketStub = self.server.stub
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault = stub._record_and_take_fault(StubRequest("GET", url.path, query, headers, time.monotonic()))
        if fault and fault.delay and stub._stopping.wait(fault.delay):
            return
        if fault and fault.status is not None:
            self._send(fault.status, fault.body, fault.headers)
        else:
            self._send(*stub._answer(url.path, query))

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a read timeout we provoked); nothing to answer

    def log_message(self, format: str, *args) -> None:
        pass  # the request log replaces stderr chatter


@pytest.fixture
def market_stub():
    with MarketStub() as stub:
        yield stub


def make_klines(
    start: datetime,
    count: int,
    interval_seconds: int = 3600,
    price: float = 100.0,
    time_unit: str = "ms",
) -> list[list]:
    """``count`` consecutive Binance klines from ``start``; kline i opens at ``price + i``.

    ``time_unit="us"`` writes open/close times in microseconds, as with ``X-MBX-TIME-UNIT: MICROSECOND``.
    """
    scale = {"ms": 1000, "us": 1_000_000}[time_unit]
    first = int(start.timestamp()) * scale
    step = interval_seconds * scale
    rows = []
    for i in range(count):
        open_time = first + i * step
        open_ = price + i
        rows.append(
            [
                open_time,
                f"{open_:.8f}",
                f"{open_ + 2:.8f}",
                f"{open_ - 1:.8f}",
                f"{open_ + 1:.8f}",
                f"{10 + i:.8f}",
                open_time + step - 1,
                f"{(10 + i) * open_:.8f}",
                100 + i,
                f"{5 + i:.8f}",
                f"{(5 + i) * open_:.8f}",
                "0",
            ]
        )
    return rows


def daily_chart(start: datetime, days: int, price: float = 100.0, volume: float = 1e6) -> tuple[list, list]:
    """``(prices, total_volumes)`` with one point per day at ``start`` + n days; day n is worth ``price + n``."""
    first = int(start.timestamp()) * 1000
    times = [first + n * 86_400_000 for n in range(days)]
    return [[t, price + n] for n, t in enumerate(times)], [[t, volume + n] for n, t in enumerate(times)]


def _to_ms(epoch: int) -> int:
    return epoch // 1000 if epoch >= MICROSECONDS_FROM else epoch
