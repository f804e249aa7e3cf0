"""The retrying HTTP client every outbound integration uses (FHIR, Medtech ALEX, OAuth2 token endpoints, the
AI service): which failures are retried, for which methods, and how long to wait in between.

Retried: a 429 or a 5xx answer, and a transport error (timeout, refused or dropped connection), up to
`RetryPolicy.attempts` tries in all. A request is retried only when repeating it cannot do harm: the
idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or any method when the caller
says the request is safe to repeat (a conditional create, a token request, a read-only POST).

The wait before a retry is exponential back-off with full jitter (random between 0 and `wait_initial` x
2^(try - 1), at most `wait_max`; "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), and never
less than what the answer's Retry-After asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP-date; also
`retry-after-ms`, which OpenAI and Azure send). A Retry-After over `max_retry_after` is either capped (the
default) or, with `give_up_on_long_retry_after`, ends the retries at once: a spent daily quota should fail
now rather than hold a worker.

Nothing here logs a body, a URL's query (it may hold an NHI) or a credential: callers pass a `label` (e.g.
"FHIR POST /Media") for the log lines. Every answer is logged once (INFO; WARNING from 400) with its status
and the request's support id when it has one (`mt-correlationid`, which Medtech support asks for;
`x-request-id`, `x-correlation-id`), so a practice can quote it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

__all__ = [
    "IDEMPOTENT_METHODS",
    "Attempted",
    "RetryPolicy",
    "Unreachable",
    "backoff",
    "new_client",
    "retry_after_seconds",
    "send_with_retries",
]

log = logging.getLogger(__name__)

#: RFC 9110 §9.2.2: repeating one of these has the effect of sending it once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_SECONDS = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. Times in seconds; `attempts` counts the first try."""

    attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 8.0
    max_retry_after: float = 30.0
    give_up_on_long_retry_after: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts counts the first try: at least 1, not {self.attempts}")

    def retryable(self, response: httpx.Response) -> bool:
        """A 429 or a 5xx: the server may answer differently a little later."""
        return response.status_code == 429 or response.status_code >= 500


@dataclass(frozen=True)
class Attempted:
    """The last answer (which may still be a 429 or a 5xx once the tries ran out) and the tries it took."""

    response: httpx.Response
    tries: int


class Unreachable(Exception):
    """Every try ended in a transport error; `error` is the last one, `tries` how many were made."""

    def __init__(self, error: httpx.TransportError, tries: int) -> None:
        super().__init__(type(error).__name__)
        self.error = error
        self.tries = tries


class _Again(Exception):
    """One try's outcome worth another try: a retryable response, or a transport error."""

    def __init__(self, response: httpx.Response | None = None, error: httpx.TransportError | None = None):
        super().__init__(f"HTTP {response.status_code}" if response is not None else type(error).__name__)
        self.response = response
        self.error = error


def backoff(policy: RetryPolicy) -> wait_random_exponential:
    """The back-off between tries as a tenacity wait: random between 0 and `wait_initial` x 2^(try - 1)
    seconds, at most `wait_max` (full jitter). For retry loops that are not HTTP through httpx (a DICOMweb
    library on requests); `send_with_retries` adds Retry-After on top of it."""
    return wait_random_exponential(multiplier=policy.wait_initial, max=policy.wait_max)


def new_client(
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client for one piece of outbound work: `timeout` seconds per phase of each try, no redirects
    followed (a redirect to another host would carry the Authorization header there)."""
    return httpx.AsyncClient(
        timeout=timeout, transport=transport, headers=dict(headers or {}), follow_redirects=False
    )


async def send_with_retries(
    attempt: Callable[[], Awaitable[httpx.Response]],
    policy: RetryPolicy,
    *,
    method: str,
    repeatable: bool = False,
    label: str = "HTTP request",
) -> Attempted:
    """Run `attempt` (one HTTP request, e.g. `lambda: client.post(url, json=body)`) until it gets an answer
    that is not worth retrying or the tries run out (see the module docstring for the rules).

    `method` decides whether a retry is allowed at all (idempotent methods), unless `repeatable` says this
    request is safe to send again. Returns the last answer and the number of tries; raises Unreachable when
    no try got an answer. Exceptions other than httpx.TransportError propagate at once.
    """
    retry_allowed = repeatable or method.upper() in IDEMPOTENT_METHODS
    attempts = policy.attempts if retry_allowed else 1
    tries = 0

    def wait(state: RetryCallState) -> float:
        pause = float(backoff(policy)(state))
        again = state.outcome.exception() if state.outcome else None
        if isinstance(again, _Again) and again.response is not None:
            asked = retry_after_seconds(again.response.headers)
            if asked is not None:
                # A little jitter on top, so clients told the same moment do not all come back at once.
                return max(pause, min(asked, policy.max_retry_after)) + random.uniform(0, 0.05)  # noqa: S311
        return pause

    def before_sleep(state: RetryCallState) -> None:
        again = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s (try %d of %d), retrying in %.1f s",
            label,
            again,
            state.attempt_number,
            attempts,
            state.upcoming_sleep,
        )

    try:
        async for trying in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait,
            retry=retry_if_exception_type(_Again),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with trying:
                tries += 1
                try:
                    response = await attempt()
                except httpx.TransportError as exc:
                    raise _Again(error=exc) from exc
                _log_answer(label, response)
                if policy.retryable(response) and not _asks_too_long(response, policy):
                    raise _Again(response=response)
                return Attempted(response, tries)
    except _Again as again:
        if again.response is not None:
            return Attempted(again.response, tries)
        error = again.error if again.error is not None else httpx.TransportError("no answer")
        raise Unreachable(error, tries) from error
    raise AssertionError("unreachable")  # pragma: no cover


#: Request headers that name a request for the other side's support staff (logged; never secrets).
SUPPORT_ID_HEADERS = ("mt-correlationid", "x-request-id", "x-correlation-id")


def _log_answer(label: str, response: httpx.Response) -> None:
    """One line per answer: the label, the status and the request's support id, if any."""
    request = response.request
    support = next(
        (f" ({name} {request.headers[name]})" for name in SUPPORT_ID_HEADERS if name in request.headers), ""
    )
    level = logging.WARNING if response.status_code >= 400 else logging.INFO
    log.log(level, "%s: answered %d%s", label, response.status_code, support)


def _asks_too_long(response: httpx.Response, policy: RetryPolicy) -> bool:
    if not policy.give_up_on_long_retry_after:
        return False
    asked = retry_after_seconds(response.headers)
    return asked is not None and asked > policy.max_retry_after


def retry_after_seconds(
    headers: httpx.Headers | Mapping[str, str], now: datetime | None = None
) -> float | None:
    """Seconds to wait from an answer's `Retry-After` (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) or its
    `retry-after-ms` (OpenAI, Azure), which wins when both are there. None when absent or unreadable; a date
    in the past gives 0. `now` (aware) is for tests."""
    headers = headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322 §3.3
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
