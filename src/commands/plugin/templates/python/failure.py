"""Failures a plugin reports, and what an HTTP status means, free of the host
(so the logic is unit-tested natively). app.py turns a Failure into the
contract's plugin-error."""

# Import at the top of a module: componentize-py bundles what the app imports
# while it is built, and a module first imported inside a function is missing
# from the component.
import json


class Failure(Exception):
    """Why the plugin failed. `kind` picks how credbroker answers:
    misconfigured (settings wrong), denied (the backend refused), unavailable
    (down or timed out: retried), throttled (rate limited: retried later) or
    failed (anything else)."""

    KINDS = ("misconfigured", "denied", "unavailable", "throttled", "failed")

    def __init__(self, kind: str, message: str):
        assert kind in self.KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_status(status: int) -> None:
    """Raise the Failure an HTTP status means, as the Rust SDK's
    error_for_status does: 401/403 denied, 429 throttled, 408/5xx
    unavailable, any other non-2xx failed. Never quotes the body."""
    if 200 <= status < 300:
        return
    message = f"the server answered HTTP {status}"
    if status in (401, 403):
        raise Failure("denied", message)
    if status == 429:
        raise Failure("throttled", message)
    if status == 408 or 500 <= status < 600:
        raise Failure("unavailable", message)
    raise Failure("failed", message)


def parse_json(body: bytes) -> dict:
    """The JSON object in `body`, or a Failure that does not quote it."""
    try:
        value = json.loads(body)
    except ValueError as error:
        raise Failure("failed", f"the response body is not valid JSON (at position {getattr(error, 'pos', '?')})")
    if not isinstance(value, dict):
        raise Failure("failed", "the response body is not a JSON object")
    return value
