"""The reconciler service front-end (see issue: continuous sync and drift detection)."""
