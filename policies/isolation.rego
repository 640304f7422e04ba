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

# Other environments, in the change or on the base branch (a PR that deletes one is still checked).
others := [name | some name in lib.environments; name != input.environment.name]

# A value names another environment when that name stands as a word of its own.
word(names) := sprintf(`(^|[^A-Za-z0-9])(%s)([^A-Za-z0-9]|$)`, [concat("|", names)])

# One pattern for all other environments; only values that match are looked at again.
suspicious contains [r, value] if {
	count(others) > 0
	pattern := word(others)
	some r in input.resources
	r.kind in {"StackComponent", "ServiceConnector"}
	some value in pointers(r)
	regex.match(pattern, value)
}

deny_cross_environment contains result if {
	some [r, value] in suspicious
	some other in others
	regex.match(word([other]), value)
	result := {
		"msg": sprintf("%s in %s points at %q, which belongs to environment %s", [lib.id(r), input.environment.name, value, other]),
		"resource": lib.id(r),
		"fix": sprintf("use %s's own resource (e.g. via ${infra.…} outputs or ${env.name})", [input.environment.name]),
		"policy_id": "SW004",
	}
}
