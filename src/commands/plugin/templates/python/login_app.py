"""{{name}}: a credbroker login backend written in Python (componentize-py,
world `login` of wit/credbroker.wit). The logic is in logic.py; this file
talks to the host.

Settings:
  url      the user directory, e.g. https://directory.corp.example (grant its origin)
  api-key  this webhook's key at the directory; env:NAME or file:PATH
"""

from typing import Optional

from wit_world import exports
from wit_world.exports import password_login
from wit_world.imports import log, types

import glue
import logic
from failure import Failure


def directory():
    """The directory's base URL and the headers every request carries."""
    url = glue.require("url").rstrip("/")
    api_key = glue.require("api-key", secret=True)
    return url, [("authorization", f"Bearer {api_key}"), ("accept", "application/json")]


def user_info(user) -> types.UserInfo:
    username, groups = user
    return types.UserInfo(username=username, uid=None, groups=groups, extra=[])


class PasswordLogin(exports.PasswordLogin):
    def authenticate(self, username: str, password: str) -> password_login.LoginOutcome:
        log.mark_secret(password)
        try:
            url, headers = directory()
            headers = headers + [("content-type", "application/json")]
            response = glue.send("POST", f"{url}/v1/authenticate", headers, logic.check_request(username, password))
            user = logic.login_outcome(response.status, response.body)
        except Failure as failure:
            raise glue.plugin_error(failure)
        if user is None:
            return password_login.LoginOutcome_Rejected("the directory refused the password")
        return password_login.LoginOutcome_Authenticated(user_info(user))

    def lookup(self, username: str) -> Optional[types.UserInfo]:
        try:
            url, headers = directory()
            response = glue.send("GET", url + logic.lookup_path(username), headers)
            user = logic.current_user(response.status, response.body)
        except Failure as failure:
            raise glue.plugin_error(failure)
        return None if user is None else user_info(user)
