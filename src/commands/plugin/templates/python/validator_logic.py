"""{{name}}'s logic, free of the host (tested natively: python3 -m unittest).

It asks an OAuth 2.0 token introspection endpoint (RFC 7662) about each
bearer token: POST {url} with the form token=..., authenticated as a client,
answers {"active": true, "username": "ada", "groups": ["devs"]}. Adapt the
answer to your service; keep the checks."""

import base64
import urllib.parse

from failure import Failure, check_status, parse_json


def introspection_request(token: str, client_id: str, client_secret: str):
    """The headers and form body asking about `token`."""
    credentials = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    headers = [
        ("authorization", "Basic " + base64.b64encode(credentials.encode()).decode()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
    ]
    body = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode()
    return headers, body


def outcome(status: int, body: bytes):
    """(username, groups) for an active token, None for one that is not."""
    check_status(status)
    answer = parse_json(body)
    if answer.get("active") is not True:
        return None
    username = answer.get("username") or answer.get("sub")
    if not isinstance(username, str) or not username:
        raise Failure("failed", "the introspection answer names no user (`username` or `sub`)")
    groups = answer.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        raise Failure("failed", "the introspection answer's `groups` is not a list of names")
    return username, groups
