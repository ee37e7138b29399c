"""[scoring] The champion's answers: one scorer for the service and the pipeline.

* :mod:`~churn.scoring.scorer` — encoded rows to probabilities, labels at the model's decision
  threshold, risk tiers and top reasons (what ``/score`` and ``/score_batch`` return);
* :mod:`~churn.scoring.batch` — the same scorer over a whole feature table in chunks, as the
  columns of the ``customer_scores`` table and its CRM export.

No BentoML, Dagster or pandas at import time: the service imports this package.
"""
