# ZenML resources are named with their environment as prefix (dev-…, prod-…).
package stackward.naming

import data.lib.stackward as lib
import rego.v1

prefixed_kinds := {"ServiceConnector", "StackComponent", "Stack"}

deny_unprefixed_name contains result if {
	some r in input.resources
	r.kind in prefixed_kinds
	prefix := sprintf("%s-", [input.environment.name])
	not startswith(r.name, prefix)
	result := {
		"msg": sprintf("%s is not named with its environment's prefix %q", [lib.id(r), prefix]),
		"resource": lib.id(r),
		"fix": sprintf("rename it to %s%s (in the base folder: ${env.name}-…)", [prefix, r.name]),
		"policy_id": "SW003",
	}
}
