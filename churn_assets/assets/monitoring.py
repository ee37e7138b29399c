"""[monitoring] Prediction logs, drift and realized model performance."""
