# Local (single-machine) flavors only belong in development environments.
package stackward.local_flavors

import data.lib.stackward as lib
import rego.v1

deny_local_flavor contains result if {
	not input.environment.name in lib.local_flavor_environments
	some r in input.resources
	r.kind == "StackComponent"
	r.spec.flavor in lib.local_flavors
	result := {
		"msg": sprintf("%s uses the %s flavor, which is only allowed in %s", [lib.id(r), r.spec.flavor, concat(", ", sort(lib.local_flavor_environments))]),
		"resource": lib.id(r),
		"fix": sprintf("use a remote flavor for the %s (e.g. gcp, vertex)", [r.spec.type]),
		"policy_id": "SW005",
	}
}
