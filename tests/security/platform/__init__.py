"""Attacks on the platform's boundaries (gateway, API, TLS, broker), against real services.
Apart from tests/security's sandbox attacks so that the cgroup v2 guest, which has no broker,
runs those alone."""
