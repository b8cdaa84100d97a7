"""Seeded, bounded fuzz suite: generators (gen_*), the harness that runs and classifies cases,
and the worker process that runs them (see docs/fuzz.md)."""
