"""Tests of the provider layer: the conformance suite, the retry layer, the sandbox over HTTP."""
