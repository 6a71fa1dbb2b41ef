"""Inbound processor webhooks: the route that verifies and stores, the inbox, the worker."""
