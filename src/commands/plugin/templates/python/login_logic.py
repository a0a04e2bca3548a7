"""{{name}}'s logic, free of the host (tested natively: python3 -m unittest).

credbroker serve asks it to check passwords (POST /v1/login/NAME) and issues
its own short-lived tokens, and asks again about the user while they live. It
checks them at a user directory's HTTP API:
  POST {url}/v1/authenticate {"username", "password"} answers 200
    {"username": "ada", "groups": ["devs"]}, or 401 for a wrong password;
  GET {url}/v1/users?name=ada answers the same user, or 404 when gone.
Adapt the requests and answers to your directory; keep the checks."""

import json
import urllib.parse

from failure import Failure, check_status, parse_json


def check_request(username: str, password: str) -> bytes:
    """The body asking the directory to check a password."""
    return json.dumps({"username": username, "password": password}).encode()


def lookup_path(username: str) -> str:
    """The path (with its query) asking for `username`."""
    return "/v1/users?" + urllib.parse.urlencode({"name": username})


def user(answer: dict):
    """(username, groups) from a directory's user."""
    username, groups = answer.get("username"), answer.get("groups") or []
    if not isinstance(username, str) or not username:
        raise Failure("failed", "the directory answered a user without `username`")
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        raise Failure("failed", "the directory answered `groups` that are not a list of names")
    return username, groups


def login_outcome(status: int, body: bytes):
    """(username, groups) for a right password, None for a wrong one (a
    rejection, not an error: the client is told only "invalid username or
    password"); a failing directory is a Failure (the client retries)."""
    if status == 401:
        return None
    check_status(status)
    return user(parse_json(body))


def current_user(status: int, body: bytes):
    """(username, groups) as of now, None when the directory no longer has them."""
    if status == 404:
        return None
    check_status(status)
    return user(parse_json(body))
