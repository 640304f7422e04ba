package stackward.prod_destroy_test

import data.stackward.prod_destroy
import rego.v1

change(action) := {"kind": "StackComponent", "name": "prod-orchestrator", "action": action}

test_replace_in_prod_without_label_is_denied if {
	results := prod_destroy.deny_destroy with input as {
		"environment": {"name": "prod"},
		"changes": [change("replace"), change("update")],
		"pull_request": {"labels": ["infra"]},
	}
	count(results) == 1
	some r in results
	r.msg == "this change would replace StackComponent/prod-orchestrator in prod"
}

test_delete_in_prod_without_a_pull_request_is_denied if {
	count(prod_destroy.deny_destroy) == 1 with input as {"environment": {"name": "prod"}, "changes": [change("delete")], "pull_request": null}
}

test_label_allows_it_with_a_warning if {
	input_doc := {"environment": {"name": "prod"}, "changes": [change("delete")], "pull_request": {"labels": ["stackward:allow-destroy"]}}
	count(prod_destroy.deny_destroy) == 0 with input as input_doc
	count(prod_destroy.warn_destroy_approved) == 1 with input as input_doc
}

test_destroy_outside_prod_passes if {
	count(prod_destroy.deny_destroy) == 0 with input as {"environment": {"name": "dev"}, "changes": [change("delete")]}
}

test_heal_in_prod_warns if {
	count(prod_destroy.warn) == 1 with input as {"environment": {"name": "prod", "drift": "heal"}}
	count(prod_destroy.warn) == 0 with input as {"environment": {"name": "prod", "drift": "report"}}
}
