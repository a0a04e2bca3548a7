"""{{name}}: a credbroker provider written in Python (componentize-py, world
`provider` of wit/credbroker.wit). The logic is in logic.py; this file talks
to the host.

Settings:
  url      the token service, e.g. https://tokens.corp.example (grant its origin)
  api-key  the key; env:NAME or file:PATH keeps it out of config files
"""

import time

from wit_world import exports
from wit_world.imports import log, types

import glue
import logic
from failure import Failure


class CredentialProvider(exports.CredentialProvider):
    def get_credential(self, request: types.CredentialRequest) -> types.Credential:
        try:
            url = glue.require("url").rstrip("/")
            api_key = glue.require("api-key", secret=True)
            cluster = request.cluster.server if request.cluster else None
            headers = [
                ("authorization", f"Bearer {api_key}"),
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ]
            response = glue.send("POST", f"{url}/v1/token", headers, logic.token_request(cluster))
            token, expires_in = logic.read_answer(response.status, response.body)
        except Failure as failure:
            raise glue.plugin_error(failure)
        # Declared secret before anything could log it.
        log.mark_secret(token)
        log.log(log.Level.INFO, f"got a token valid for {expires_in} s")
        return types.Credential(secret=types.CredentialSecret_Token(token), expires_at=int(time.time()) + expires_in)
