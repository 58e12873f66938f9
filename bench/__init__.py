"""Benchmarks (run as scripts; a package so that unit tests can import their site builders)."""
