import unittest

from failure import Failure
from logic import read_answer, token_request


class ReadAnswer(unittest.TestCase):
    def test_a_token_and_its_lifetime(self):
        self.assertEqual(read_answer(200, b'{"token":"t0k3n","expiresIn":600}'), ("t0k3n", 600))

    def test_a_quote_in_a_value_stays_inside_the_json(self):
        self.assertEqual(token_request('https://a"b'), b'{"cluster": "https://a\\"b"}')

    def test_refusals_and_faults_are_told_apart(self):
        for status, kind in [(401, "denied"), (403, "denied"), (429, "throttled"), (503, "unavailable"), (404, "failed")]:
            with self.assertRaises(Failure) as caught:
                read_answer(status, b"")
            self.assertEqual(caught.exception.kind, kind)
        with self.assertRaises(Failure) as caught:
            read_answer(200, b'{"token":"","expiresIn":60}')
        self.assertEqual(caught.exception.message, "the token service answered no token")
        with self.assertRaises(Failure) as caught:
            read_answer(200, b"<html>s3cret</html>")
        self.assertNotIn("s3cret", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
