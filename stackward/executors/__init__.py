"""Executors: the only code with side effects on ZenML and Terraform."""
