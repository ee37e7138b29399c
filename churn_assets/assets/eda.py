"""[features] Exploratory report on the features and labels (``eda_report``)."""
