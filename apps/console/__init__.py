"""`pitstop console`: the operators' web console over the Delta tables and the MLflow registry."""
