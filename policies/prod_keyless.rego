# Production connectors must not depend on long-lived keys.
package stackward.prod_keyless

import data.lib.stackward as lib
import rego.v1

deny_long_lived_key contains result if {
	lib.production
	some r in input.resources
	r.kind == "ServiceConnector"
	r.spec.authMethod in lib.long_lived_key_methods
	result := {
		"msg": sprintf(
			"%s uses %s auth in %s: production connectors must not use long-lived keys",
			[lib.id(r), r.spec.authMethod, input.environment.name],
		),
		"resource": lib.id(r),
		"fix": "use a keyless auth method: implicit (workload identity), external-account, or iam-role",
		"policy_id": "SW001",
	}
}
