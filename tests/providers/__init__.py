"""Tests of the provider layer: the conformance suite, the retry layer, the sandbox over HTTP."""

import pytest

# The conformance checks live in a plain module so a test can run them against a deliberately
# broken provider; rewriting its asserts keeps pytest's detailed failure messages.
pytest.register_assert_rewrite("tests.providers.conformance")
