"""Helpers for tests against the real servers: loading data in, reading it back."""
