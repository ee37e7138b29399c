"""Synthetic subscription data with a known, latent churn hazard (see ``generator``)."""

from churn.synthetic.generator import (
    GenerationSummary,
    GeneratorConfig,
    generate,
    observation_dates,
)

__all__ = ["GenerationSummary", "GeneratorConfig", "generate", "observation_dates"]
