"""Container model: pure values and decisions, including the OCI runtime spec builder."""
