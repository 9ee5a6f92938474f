"""Test helpers shared across the chainserve test suite."""
