"""Rate-limit errors, each with a stable code and the HTTP status it means."""

from __future__ import annotations


class RateLimitError(Exception):
    """Base of every error this package raises."""

    code = "rate_limit_error"
    status = 400
    title = "Request refused"
    # The message is built from limits and window names only, never from submitted values.
    public_message = False


class InvalidPolicy(RateLimitError):
    """A policy string is malformed (a setting, `keys set-limit`, the admin API)."""

    code = "invalid_argument"
    status = 422
    title = "Invalid argument"
    public_message = True


class BatchTooLarge(RateLimitError):
    """A request costs more units than a window admits: it could never be admitted."""

    code = "batch_too_large"
    status = 422
    title = "Batch too large"
    public_message = True


class RateLimited(RateLimitError):
    """A window has no room for the request's units."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"
    public_message = True


class CounterStoreUnavailable(RateLimitError):
    """The counter store (Redis) did not answer; the store-failure mode decides what follows."""

    code = "ratelimit_unavailable"
    status = 503
    title = "Rate limiting unavailable"
    public_message = True
