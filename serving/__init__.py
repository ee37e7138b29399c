"""The online scoring service: the champion packaged as a Bento and served by BentoML.

``service.py`` is the only module that knows BentoML's service API; everything else here is plain
Python (schemas, the online feature computation, middleware; the scoring core is the library's
:mod:`churn.scoring`, shared with the pipeline) so it can be tested and
reused without a server. Nothing in this package imports Dagster: the Bento ships without it.
"""

from churn.settings import pin_homes

pin_homes()  # before the service touches the BentoML store: $CHURN_HOME/bentoml unless set
