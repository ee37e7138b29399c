"""The Dagster code location: assets, checks, sensors and resources over the ``churn`` library.

Modules here only orchestrate; the data logic lives in ``churn`` so that the BentoML service can
reuse it without importing Dagster.
"""

import warnings

import dagster as dg

from churn.settings import pin_homes

pin_homes()  # before any asset touches the BentoML store: $CHURN_HOME/bentoml unless set

# Dagster flags parameters this code location relies on on purpose (``backfill_policy``, sensor
# ``owners``, ``AssetSelection.all(include_sources=...)``) as beta/preview on every load, once
# per asset; the CLI's ``asset materialize`` as superseded. They are known and chosen, so they
# are silenced here, where the code location loads, instead of burying the run logs.
for _known in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
    warnings.filterwarnings("ignore", category=_known)
