# Deleting or replacing anything in production needs an explicit yes: the PR label
# stackward:allow-destroy. Reads the planned changes (input.changes) and the PR (input.pull_request).
package stackward.prod_destroy

import data.lib.stackward as lib
import rego.v1

destructive := {"delete", "replace"}

approved if lib.allow_destroy_label in input.pull_request.labels

deny_destroy contains result if {
	lib.production
	not approved
	some change in input.changes
	change.action in destructive
	result := {
		"msg": sprintf("this change would %s %s/%s in %s", [change.action, change.kind, change.name, input.environment.name]),
		"resource": sprintf("%s/%s", [change.kind, change.name]),
		"fix": sprintf("if this is intended, add the label %s to the pull request", [lib.allow_destroy_label]),
		"policy_id": "SW009",
	}
}

warn_destroy_approved contains result if {
	lib.production
	approved
	some change in input.changes
	change.action in destructive
	result := {
		"msg": sprintf("%s/%s will be %sd in %s (approved by the %s label)", [change.kind, change.name, change.action, input.environment.name, lib.allow_destroy_label]),
		"resource": sprintf("%s/%s", [change.kind, change.name]),
		"policy_id": "SW009",
	}
}

# Advice: healing drift automatically in production overwrites manual hotfixes.
warn contains result if {
	lib.production
	input.environment.drift == "heal"
	result := {
		"msg": sprintf("%s heals drift automatically; manual hotfixes will be reverted", [input.environment.name]),
		"fix": "consider drift: report for production",
		"policy_id": "SW010",
	}
}
