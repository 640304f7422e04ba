package stackward.isolation_test

import data.stackward.isolation
import rego.v1

store(path, connector) := {
	"kind": "StackComponent", "name": "dev-store",
	"spec": {"type": "artifact_store", "flavor": "gcp", "configuration": {"path": path}, "connector": connector},
}

test_prod_bucket_from_dev_is_denied if {
	results := isolation.deny_cross_environment with input as {
		"environment": {"name": "dev"},
		"environments": ["dev", "staging", "prod"],
		"resources": [store("gs://zenml-prod-artifacts/x", "dev-gcp")],
	}
	count(results) == 1
	some r in results
	contains(r.msg, "belongs to environment prod")
}

test_connector_of_another_environment_is_denied if {
	count(isolation.deny_cross_environment) == 1 with input as {
		"environment": {"name": "dev"},
		"environments": ["dev", "prod"],
		"resources": [store("gs://zenml-dev-artifacts/x", "prod-gcp")],
	}
}

test_own_resources_pass if {
	count(isolation.deny_cross_environment) == 0 with input as {
		"environment": {"name": "dev"},
		"environments": ["dev", "prod"],
		"resources": [store("gs://${infra.base.artifact_bucket}/artifacts", "dev-gcp")],
	}
}

test_name_inside_a_word_is_not_a_match if {
	count(isolation.deny_cross_environment) == 0 with input as {
		"environment": {"name": "dev"},
		"environments": ["dev", "prod"],
		"resources": [store("gs://products-dev/x", "dev-gcp")],
	}
}

test_environment_deleted_by_the_change_is_still_another_environment if {
	count(isolation.deny_cross_environment) == 1 with input as {
		"environment": {"name": "dev"},
		"environments": ["dev"],
		"resources": [store("gs://zenml-prod-artifacts/x", "dev-gcp")],
		"base": {"environments": ["dev", "prod"]},
	}
}
