"""Monitoring logic kept free of Dagster: prediction-log ingestion, drift, realized quality.

The assets in ``churn_assets.defs.monitoring`` are thin wrappers, so each piece can be tested
(and reused from a notebook) with a DuckDB connection and data frames only.
"""
