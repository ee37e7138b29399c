"""[features] Monthly snapshots, point-in-time features, labels, the training set, EDA."""
