"""Benchmarks: DocuMind's stream pipeline against the seed's RQ queue."""
