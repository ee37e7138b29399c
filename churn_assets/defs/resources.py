"""The resources every group shares: the warehouse and the state folder, from the environment."""

import dagster as dg

from churn.settings import load_settings
from churn_assets.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(load_settings()))
