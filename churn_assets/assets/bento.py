"""[model] The champion packaged as a Bento (``churn_bento``)."""
