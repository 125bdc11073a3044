"""Training pipeline: data -> augment -> train -> evaluate."""
