"""[staging] Typed, validated, deduplicated tables with every rejected row and its reason."""
