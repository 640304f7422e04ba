"""The policy gate: OPA/Rego policies on specs and plans, embedded or on an OPA server."""
