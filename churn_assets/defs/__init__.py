"""Dagster definitions, one folder per asset group; loaded by :mod:`churn_assets.definitions`."""
