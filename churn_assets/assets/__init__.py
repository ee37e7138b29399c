"""Assets by stage: the folder reads like the asset graph."""
