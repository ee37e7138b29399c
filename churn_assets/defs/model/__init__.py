"""[model] Candidates, the gated evaluation, the champion in the model store, the Bento."""
