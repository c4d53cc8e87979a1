"""Small deterministic stand-ins for outside services, for tests."""
