"""Model training, validation, storage and serving."""
