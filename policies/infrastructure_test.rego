package stackward.infrastructure_test

import data.stackward.infrastructure
import rego.v1

module(variables) := {"environment": {"name": "dev"}, "resources": [{"kind": "Infrastructure", "name": "base", "spec": {"variables": variables}}]}

good := {"bucket_versioning": true, "public_access_prevention": "enforced", "machine_type": "n2-standard-4"}

test_good_module_passes if {
	count(infrastructure.deny_unversioned_bucket) == 0 with input as module(good)
	count(infrastructure.deny_unencrypted_bucket) == 0 with input as module(good)
	count(infrastructure.deny_public_access) == 0 with input as module(good)
	count(infrastructure.deny_machine_type) == 0 with input as module(good)
}

test_versioning_off_is_denied if {
	count(infrastructure.deny_unversioned_bucket) == 1 with input as module({"bucket_versioning": false})
}

test_encryption_off_is_denied if {
	count(infrastructure.deny_unencrypted_bucket) == 1 with input as module({"encryption": false})
}

test_public_access_is_denied if {
	count(infrastructure.deny_public_access) == 1 with input as module({"public_access_prevention": "inherited"})
	count(infrastructure.deny_public_access) == 1 with input as module({"allow_public_access": true})
}

test_machine_type_outside_allow_list_is_denied if {
	results := infrastructure.deny_machine_type with input as module({"node_machine_type": "n2-highmem-96"})
	some r in results
	contains(r.msg, "n2-highmem-96")
}

plan(after) := {"environment": {"name": "dev"}, "resources": [], "terraform_plan": {"resource_changes": [
	{"address": "module.base.google_storage_bucket.artifacts", "type": "google_storage_bucket", "change": {"actions": ["create"], "after": after}},
]}}

test_plan_bucket_without_versioning_is_denied if {
	count(infrastructure.deny_unversioned_bucket) == 1 with input as plan({"versioning": [{"enabled": false}], "public_access_prevention": "enforced"})
	count(infrastructure.deny_public_access) == 0 with input as plan({"versioning": [{"enabled": false}], "public_access_prevention": "enforced"})
}

test_plan_good_bucket_passes if {
	count(infrastructure.deny_unversioned_bucket) == 0 with input as plan({"versioning": [{"enabled": true}], "public_access_prevention": "enforced"})
}
