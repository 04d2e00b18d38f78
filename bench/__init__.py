"""Benchmarks (`make bench`): they print numbers and ratios; they are not tests."""
