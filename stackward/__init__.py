"""stackward: an environments repo of ZenML and Terraform specs as the source of truth."""
