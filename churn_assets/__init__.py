"""The Dagster code location: assets, checks, sensors and resources over the ``churn`` library.

Modules here only orchestrate; the data logic lives in ``churn`` so that the BentoML service can
reuse it without importing Dagster.
"""
