"""{{name}}'s logic, free of the host (tested natively: python3 -m unittest).

It exchanges an API key for a short-lived Kubernetes token at a token service:
POST {url}/v1/token with `Authorization: Bearer {api-key}` and
{"cluster": "https://api-server"} answers {"token": "...", "expiresIn": 600}.
Adapt the request and the answer to your service; keep the checks."""

import json

from failure import Failure, check_status, parse_json


def token_request(cluster_server):
    """The body asking for a token for the API server `cluster_server` (None
    when kubectl did not say)."""
    return json.dumps({"cluster": cluster_server}).encode()


def read_answer(status: int, body: bytes):
    """The token and its lifetime in seconds, from the service's answer."""
    check_status(status)
    answer = parse_json(body)
    token, expires_in = answer.get("token"), answer.get("expiresIn")
    if not isinstance(token, str) or not token:
        raise Failure("failed", "the token service answered no token")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise Failure("failed", "the token service answered no positive `expiresIn`")
    return token, expires_in
