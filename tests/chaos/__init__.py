"""The seeded chaos suite (`make chaos`; a short fixed-seed run in tests/e2e/test_chaos_short.py)."""
