package stackward.labels_test

import data.stackward.labels
import rego.v1

env := {"name": "dev", "labels": {}}

test_missing_team_is_denied if {
	results := labels.deny_missing_label with input as {
		"environment": env,
		"resources": [{"kind": "Stack", "name": "dev-stack", "labels": {"environment": "dev"}}],
	}
	count(results) == 1
	some r in results
	r.msg == `Stack/dev-stack has no "team" label`
}

test_all_labels_present_passes if {
	count(labels.deny_missing_label) == 0 with input as {
		"environment": env,
		"resources": [{"kind": "Stack", "name": "dev-stack", "labels": {"environment": "dev", "team": "ml"}}],
	}
}

test_label_of_another_environment_is_denied if {
	count(labels.deny_wrong_environment_label) == 1 with input as {
		"environment": env,
		"resources": [{"kind": "Stack", "name": "dev-stack", "labels": {"environment": "prod", "team": "ml"}}],
	}
}
