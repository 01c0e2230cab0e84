"""Training toolkit: dataset building, feature caching, training and evaluation of the head."""
