"""A credbroker provider written in Python: exchange an API key for a
short-lived Kubernetes token at an organization's token service.

Settings:
  url      the token service, e.g. https://tokens.corp.example (grant its origin)
  user     who asks
  api-key  the key; use env:NAME or file:PATH so it never sits in a config file

The service answers POST {url}/v1/token {"user", "apiKey"} with
{"token", "expiresIn"}; 401/403 mean a bad key, 429 slow down.

Built with componentize-py against credbroker's WIT (see README.md).
Everything it does goes through the host: config, log, http. It has no
network, files or environment of its own.
"""

import json
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, http, log, types


def setting(name: str) -> str:
    value = config.get(name)
    if not value:
        raise Err(types.PluginError_Misconfigured(f"set `{name}` (--set {name}=... or the profile's settings)"))
    return value


def reason(error) -> str:
    """The message inside a host-error variant."""
    return str(getattr(error, "value", None) or type(error).__name__)


class CredentialProvider(exports.CredentialProvider):
    def get_credential(self, request: types.CredentialRequest) -> types.Credential:
        url = setting("url").rstrip("/")
        user = setting("user")
        api_key = setting("api-key")
        body = json.dumps({"user": user, "apiKey": api_key}).encode()
        try:
            response = http.send(
                http.Request(
                    method="POST",
                    url=f"{url}/v1/token",
                    headers=[("content-type", "application/json"), ("accept", "application/json")],
                    body=body,
                    timeout_ms=5000,
                    follow_redirects=False,
                )
            )
        except Err as e:
            raise Err(types.PluginError_Unavailable(f"cannot reach the token service: {reason(e.value)}"))
        if response.status in (401, 403):
            raise Err(types.PluginError_Denied(f"the token service refused the API key of `{user}`"))
        if response.status == 429:
            raise Err(types.PluginError_Throttled("the token service asks to slow down; try again shortly"))
        if response.status != 200:
            raise Err(types.PluginError_Unavailable(f"the token service answered HTTP {response.status}"))
        try:
            answer = json.loads(response.body)
            token = str(answer["token"])
            expires_in = int(answer.get("expiresIn", 300))
        except (ValueError, KeyError, TypeError) as e:
            raise Err(types.PluginError_Failed(f"the token service's answer is not what was expected: {e}"))
        log.mark_secret(token)
        if log.enabled(log.Level.DEBUG):
            log.log(log.Level.DEBUG, f"answer headers: {response.headers}")
        log.log(log.Level.INFO, f"token for `{user}`, valid {expires_in} s")
        return types.Credential(
            secret=types.CredentialSecret_Token(token),
            expires_at=int(time.time()) + expires_in,
        )
