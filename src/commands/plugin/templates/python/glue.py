"""What every world's app.py shares: settings, HTTP through the host, and
Failure turned into the contract's plugin-error."""

from componentize_py_types import Err
from wit_world.imports import config, http, log, types

from failure import Failure

ERRORS = {
    "misconfigured": types.PluginError_Misconfigured,
    "denied": types.PluginError_Denied,
    "unavailable": types.PluginError_Unavailable,
    "throttled": types.PluginError_Throttled,
    "failed": types.PluginError_Failed,
}


def plugin_error(failure: Failure) -> Err:
    """The Err a world's export raises for `failure`."""
    return Err(ERRORS[failure.kind](failure.message))


def require(name: str, secret: bool = False) -> str:
    """Setting `name`, or a misconfigured failure naming it. A secret one is
    declared secret, so the host redacts it from every later log line."""
    value = config.get(name)
    if not value:
        raise Failure("misconfigured", f"setting `{name}` is required (pass --set {name}=... or add it to the settings)")
    if secret:
        log.mark_secret(value)
    return value


def send(method: str, url: str, headers: list, body: bytes = b"") -> http.Response:
    """Send a request through the host; an unreachable server or a timeout
    is "unavailable", a refused URL (not granted) "misconfigured"."""
    try:
        return http.send(
            http.Request(method=method, url=url, headers=headers, body=body, timeout_ms=None, follow_redirects=False)
        )
    except Err as error:
        reason = error.value
        message = str(getattr(reason, "value", None) or type(reason).__name__)
        if isinstance(reason, (types.HostError_Unreachable, types.HostError_Timeout)):
            raise Failure("unavailable", f"cannot reach {url}: {message}")
        if isinstance(reason, types.HostError_Denied):
            raise Failure("misconfigured", f"denied by policy: {message}")
        raise Failure("failed", f"invalid request: {message}")
