package stackward.local_flavors_test

import data.stackward.local_flavors
import rego.v1

local_store := {"kind": "StackComponent", "name": "x-store", "spec": {"type": "artifact_store", "flavor": "local"}}

test_local_flavor_in_staging_is_denied if {
	count(local_flavors.deny_local_flavor) == 1 with input as {"environment": {"name": "staging"}, "resources": [local_store]}
}

test_local_flavor_in_dev_and_local_passes if {
	count(local_flavors.deny_local_flavor) == 0 with input as {"environment": {"name": "dev"}, "resources": [local_store]}
	count(local_flavors.deny_local_flavor) == 0 with input as {"environment": {"name": "local"}, "resources": [local_store]}
}
