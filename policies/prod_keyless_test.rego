package stackward.prod_keyless_test

import data.stackward.prod_keyless
import rego.v1

connector(method) := {"kind": "ServiceConnector", "name": "prod-gcp", "spec": {"type": "gcp", "authMethod": method}}

test_service_account_key_in_prod_is_denied if {
	results := prod_keyless.deny_long_lived_key with input as {
		"environment": {"name": "prod", "labels": {}},
		"resources": [connector("service-account")],
	}
	some r in results
	r.policy_id == "SW001"
	r.resource == "ServiceConnector/prod-gcp"
	contains(r.msg, "service-account")
}

test_production_tier_label_counts_as_prod if {
	count(prod_keyless.deny_long_lived_key) == 1 with input as {
		"environment": {"name": "live", "labels": {"tier": "production"}},
		"resources": [connector("user-account")],
	}
}

test_keyless_auth_in_prod_passes if {
	count(prod_keyless.deny_long_lived_key) == 0 with input as {
		"environment": {"name": "prod", "labels": {}},
		"resources": [connector("implicit"), connector("external-account")],
	}
}

test_keys_outside_prod_pass if {
	count(prod_keyless.deny_long_lived_key) == 0 with input as {
		"environment": {"name": "dev", "labels": {}},
		"resources": [connector("service-account")],
	}
}

test_label_removed_by_the_change_still_counts_as_prod if {
	count(prod_keyless.deny_long_lived_key) == 1 with input as {
		"environment": {"name": "live", "labels": {}},
		"resources": [connector("service-account")],
		"base": {"environment": {"name": "live", "labels": {"tier": "production"}}},
	}

	# A new environment (no base version) is judged by its own labels.
	count(prod_keyless.deny_long_lived_key) == 0 with input as {
		"environment": {"name": "live", "labels": {}},
		"resources": [connector("service-account")],
		"base": null,
	}
}

test_environment_prod_label_counts_as_prod if {
	count(prod_keyless.deny_long_lived_key) == 1 with input as {
		"environment": {"name": "live", "labels": {"team": "ml"}},
		"resources": [connector("service-account")],
		"base": {"environment": {"name": "live", "labels": {"environment": "prod"}}},
	}
}
