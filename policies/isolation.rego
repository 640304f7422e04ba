# An environment's connectors and components must not point at another environment's
# buckets, registries or connectors.
package stackward.isolation

import data.lib.stackward as lib
import rego.v1

# Values that point at something: configuration values and connector references.
pointers(r) := {value | some path, value in r.spec.configuration; is_string(value)} | {v |
	some key in ["connector", "connectorResourceId", "resourceId"]
	v := r.spec[key]
	is_string(v)
}

deny_cross_environment contains result if {
	some r in input.resources
	r.kind in {"StackComponent", "ServiceConnector"}
	some value in pointers(r)
	some other in input.environments
	other != input.environment.name
	regex.match(sprintf(`(^|[^A-Za-z0-9])%s([^A-Za-z0-9]|$)`, [other]), value)
	result := {
		"msg": sprintf("%s in %s points at %q, which belongs to environment %s", [lib.id(r), input.environment.name, value, other]),
		"resource": lib.id(r),
		"fix": sprintf("use %s's own resource (e.g. via ${infra.…} outputs or ${env.name})", [input.environment.name]),
		"policy_id": "SW004",
	}
}
