import unittest

from failure import Failure
from logic import check_request, current_user, login_outcome, lookup_path


class Login(unittest.TestCase):
    def test_a_right_password_is_the_user_a_wrong_one_a_rejection(self):
        self.assertEqual(login_outcome(200, b'{"username":"ada","groups":["devs"]}'), ("ada", ["devs"]))
        self.assertIsNone(login_outcome(401, b""))
        with self.assertRaises(Failure) as caught:
            login_outcome(503, b"")
        self.assertEqual(caught.exception.kind, "unavailable")

    def test_users_are_looked_up_until_they_are_gone(self):
        self.assertEqual(current_user(200, b'{"username":"ada"}'), ("ada", []))
        self.assertIsNone(current_user(404, b""))
        self.assertEqual(lookup_path("ada lovelace&co"), "/v1/users?name=ada+lovelace%26co")

    def test_a_quote_in_a_password_stays_inside_the_json(self):
        self.assertEqual(check_request("ada", 'p"w'), b'{"username": "ada", "password": "p\\"w"}')


if __name__ == "__main__":
    unittest.main()
