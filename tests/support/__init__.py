"""Helpers shared by more than one test suite (kept out of any conftest.py so that a suite
can import them without pulling in another suite's fixtures)."""
