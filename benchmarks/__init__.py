"""Benchmarks for churn: serving throughput and latency, and pipeline stage times.

``make bench`` (``python -m benchmarks``) runs them all; see docs/performance.md.
"""
