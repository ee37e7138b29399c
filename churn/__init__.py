"""churn: the domain library behind the Dagster code location and the BentoML service.

Nothing in this package imports Dagster or BentoML, so the Bento can ship the exact feature
code that training used without carrying the orchestrator along.
"""
