"""MLflow: where runs go (the tracking store), the model registry client that
the registry tasks and serving share, and the ledger of alias moves."""
