"""The HTTP plumbing the market-data clients share.

Retries are urllib3's ``Retry`` (mounted on a ``requests.Session``), not a hand-written loop: GET only,
exponential backoff, ``Retry-After`` honoured on 429/418/5xx. Two things it lacks are added here: a cap on how
long a ``Retry-After`` may make us sleep (an exchange ban can ask for hours; we fail loudly instead) and a log
line per retry. ``JsonHttp`` adds a timeout on every request, a minimum interval between requests, and turns
every transport failure into a :class:`SourceUnavailable` that names the URL and the last status.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from cryptobt_pipelines.sources.batch import SourceError

logger = logging.getLogger(__name__)

# 418 is Binance's "IP banned until Retry-After"; 429 is everyone's "slow down".
RETRY_STATUSES = frozenset({418, 429, 500, 502, 503, 504})
USER_AGENT = "cryptobt-pipelines"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Timeout = float | tuple[float, float]


class SourceUnavailable(SourceError):
    """The source did not answer usefully now (retries exhausted, timeouts, a too-long Retry-After).

    Unlike a plain :class:`SourceError` (unknown symbol, bad request), trying again later may work.
    """

    def __init__(self, url: str, reason: str, status: int | None = None, retry_after: float | None = None):
        self.url = url
        self.status = status
        self.retry_after = retry_after
        last = f" (last status {status})" if status is not None else ""
        super().__init__(f"GET {url}: {reason}{last}")


class RetryAfterTooLong(Exception):
    """Raised inside urllib3 when a server asks us to wait longer than ``max_retry_after``."""

    def __init__(self, status: int, retry_after: float, max_retry_after: float):
        self.status = status
        self.retry_after = retry_after
        super().__init__(
            f"server asked to wait {retry_after:g} s before retrying, more than max_retry_after={max_retry_after:g} s"
        )


class CappedRetry(Retry):
    """urllib3 ``Retry`` that refuses to sleep past ``max_retry_after`` and logs every retry."""

    def __init__(self, *args: Any, max_retry_after: float = 60.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kw: Any) -> CappedRetry:
        # urllib3 rebuilds the object on every increment from its own known parameters only.
        kw.setdefault("max_retry_after", self.max_retry_after)
        return super().new(**kw)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        retry_after = None
        if response is not None and self.respect_retry_after_header:
            retry_after = self.get_retry_after(response)
            if retry_after is not None and retry_after > self.max_retry_after:
                raise RetryAfterTooLong(response.status, retry_after, self.max_retry_after)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        where = f"{_pool.scheme}://{_pool.host}:{_pool.port}{url}" if _pool is not None else url
        cause = f"HTTP {response.status}" if response is not None else f"{type(error).__name__}: {error}"
        wait = retry_after or retry.get_backoff_time()  # as urllib3: a zero Retry-After falls back to backoff
        logger.warning("%s %s failed (%s); retry %d in %g s", method, where, cause, len(retry.history), wait)
        return retry


def make_session(
    max_retries: int = 5,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
) -> requests.Session:
    """A session that retries GETs on connection errors, read timeouts and ``RETRY_STATUSES``.

    Backoff before retry n (n >= 2) is ``backoff_factor * 2**(n-1)`` s (urllib3 retries the first at once);
    a ``Retry-After`` header replaces it. When retries run out on a status, the last response is returned
    (``raise_on_status=False``) so the caller can name it.
    """
    retry = CappedRetry(
        total=max_retries,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        max_retry_after=max_retry_after,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class MinInterval:
    """Keeps the starts of successive requests at least ``seconds`` apart (thread-safe)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._next_start = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_start:
                time.sleep(self._next_start - now)
                now = self._next_start
            self._next_start = now + self.seconds


class JsonHttp:
    """GETs against one base URL with timeouts, retries and a polite pace.

    ``session`` replaces the one built by :func:`make_session`; its adapters then decide retries.
    The pace applies to the calls made here; urllib3's retries in between follow their own backoff.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: Timeout = 10.0,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        min_interval: float = 0.0,
        max_retry_after: float = 60.0,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or make_session(max_retries, backoff_factor, max_retry_after)
        self._pace = MinInterval(min_interval)

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        return requests.Request("GET", self.base_url + path, params=params).prepare().url

    def get(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        """The response once retries are done; any status outside ``RETRY_STATUSES`` is the caller's to judge."""
        url = self.url(path, params)
        self._pace.wait()
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except RetryAfterTooLong as exc:
            raise SourceUnavailable(url, str(exc), exc.status, exc.retry_after) from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(url, f"no answer: {root_cause(exc)}") from exc
        if response.status_code in RETRY_STATUSES:
            raise SourceUnavailable(url, "retries exhausted", response.status_code)
        return response


def read_json(response: requests.Response) -> Any:
    """The decoded body of a 2xx response; any other status or a non-JSON body is a :class:`SourceError`."""
    if not response.ok:
        raise SourceError(f"GET {response.url}: HTTP {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError as exc:
        raise SourceError(f"GET {response.url}: body is not JSON: {response.text[:300]!r}") from exc


def root_cause(exc: requests.RequestException) -> str:
    """The urllib3 reason behind a requests exception, e.g. ``ReadTimeoutError(... read timeout=0.2)``."""
    inner = exc.args[0] if exc.args else exc
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        return f"{type(inner.reason).__name__}: {inner.reason} (after retries)"
    return f"{type(exc).__name__}: {exc}"


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime (UTC)")
    return (moment - EPOCH) // timedelta(milliseconds=1)
