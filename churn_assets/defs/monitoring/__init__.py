"""[monitoring] Prediction logs, drift, realized performance and what they set in motion."""
