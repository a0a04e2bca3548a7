import unittest

from failure import Failure
from logic import introspection_request, outcome


class Outcome(unittest.TestCase):
    def test_an_active_token_is_its_user(self):
        self.assertEqual(outcome(200, b'{"active":true,"username":"ada","groups":["devs"]}'), ("ada", ["devs"]))
        self.assertEqual(outcome(200, b'{"active":true,"sub":"svc-build"}'), ("svc-build", []))

    def test_inactive_tokens_are_rejected_and_faults_are_errors(self):
        self.assertIsNone(outcome(200, b'{"active":false}'))
        for status, kind in [(401, "denied"), (502, "unavailable")]:
            with self.assertRaises(Failure) as caught:
                outcome(status, b"")
            self.assertEqual(caught.exception.kind, kind)
        with self.assertRaises(Failure):
            outcome(200, b'{"active":true}')

    def test_the_token_is_form_encoded(self):
        headers, body = introspection_request("a&b=c", "client", "s e")
        self.assertEqual(body, b"token=a%26b%3Dc&token_type_hint=access_token")
        self.assertIn(("authorization", "Basic Y2xpZW50OnMrZQ=="), headers)


if __name__ == "__main__":
    unittest.main()
