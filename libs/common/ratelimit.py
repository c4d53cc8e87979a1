"""One request's rate-limit decision (GCRA), and the headers that tell the client about it.

The AUTHENTICATE script (``lua.py``) decides in the same atomic step as the key
lookup, so every gateway replica shares one limit per key. GCRA with a burst equal
to the per-minute limit: each request moves the key's *theoretical arrival time*
(TAT) on by one emission interval, ``60 / requests_per_minute`` seconds; a request
is allowed while the TAT stays within one minute of now. A full key therefore
takes ``limit`` requests at once, then one more per interval. A refused request
changes nothing (it does not push the TAT further out).
"""

from __future__ import annotations

from dataclasses import dataclass

# The response headers (IETF draft "RateLimit header fields for HTTP").
LIMIT_HEADER = "RateLimit-Limit"
REMAINING_HEADER = "RateLimit-Remaining"
RESET_HEADER = "RateLimit-Reset"
RETRY_AFTER_HEADER = "Retry-After"
# On every authenticated response.
RATE_LIMIT_HEADERS = (LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether one request may go on, and where its key stands afterwards."""

    allowed: bool
    # Requests per minute of the key (also its burst).
    limit: int
    # Requests that could follow at once, after this one.
    remaining: int
    # Whole seconds (rounded up) until the key's full burst is available again.
    reset_s: int
    # Whole seconds (rounded up) until a refused request would be allowed; 0 when allowed.
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` for every response, plus ``Retry-After`` on a refusal."""
        found = {
            LIMIT_HEADER: str(self.limit),
            REMAINING_HEADER: str(self.remaining),
            RESET_HEADER: str(self.reset_s),
        }
        if not self.allowed:
            found[RETRY_AFTER_HEADER] = str(self.retry_after_s)
        return found
