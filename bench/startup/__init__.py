"""Startup benchmark: time from start to N running replicas (floor, compose, podctl)."""
