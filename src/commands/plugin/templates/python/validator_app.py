"""{{name}}: a credbroker validator written in Python (componentize-py, world
`validator` of wit/credbroker.wit). The logic is in logic.py; this file talks
to the host.

Settings:
  url            the introspection endpoint (grant its origin)
  client-id      this webhook's client at the endpoint
  client-secret  its secret; env:NAME or file:PATH
"""

from wit_world import exports
from wit_world.imports import types

import glue
import logic
from failure import Failure


class TokenValidator(exports.TokenValidator):
    def validate(self, review: types.TokenReview) -> types.ReviewOutcome:
        try:
            url = glue.require("url")
            client_id = glue.require("client-id")
            client_secret = glue.require("client-secret", secret=True)
            headers, body = logic.introspection_request(review.token, client_id, client_secret)
            response = glue.send("POST", url, headers, body)
            user = logic.outcome(response.status, response.body)
        except Failure as failure:
            raise glue.plugin_error(failure)
        if user is None:
            return types.ReviewOutcome_Rejected("the token is not active")
        username, groups = user
        return types.ReviewOutcome_Authenticated(
            types.Authenticated(user=types.UserInfo(username=username, uid=None, groups=groups, extra=[]), audiences=[])
        )
