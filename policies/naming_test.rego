package stackward.naming_test

import data.stackward.naming
import rego.v1

test_unprefixed_component_is_denied if {
	results := naming.deny_unprefixed_name with input as {
		"environment": {"name": "staging"},
		"resources": [{"kind": "StackComponent", "name": "artifact-store"}],
	}
	some r in results
	r.fix == "rename it to staging-artifact-store (in the base folder: ${env.name}-…)"
}

test_prefixed_names_and_infrastructure_pass if {
	count(naming.deny_unprefixed_name) == 0 with input as {
		"environment": {"name": "staging"},
		"resources": [
			{"kind": "Stack", "name": "staging-stack"},
			{"kind": "Infrastructure", "name": "base"},
		],
	}
}
