# What runs on a stack or component (input.changes[_].impact, read from the ZenML store when the
# plan is made): deleting or replacing one that active schedules or deployments use breaks them.
package stackward.impact

import rego.v1

breaking := {"delete", "replace"}

warn_breaks_what_runs contains result if {
	some change in input.changes
	change.action in breaking
	schedules := object.get(change, ["impact", "schedules"], [])
	deployments := object.get(change, ["impact", "deployments"], [])
	users := array.concat(schedules, deployments)
	count(users) > 0
	result := {
		"msg": sprintf("%s/%s will be %sd while %d active schedule(s) and %d deployment(s) use it: %s", [
			change.kind, change.name, change.action,
			count(schedules), count(deployments), concat(", ", users),
		]),
		"resource": sprintf("%s/%s", [change.kind, change.name]),
		"fix": "pause the schedules or move the deployments first, or merge when they can miss runs",
		"policy_id": "SW015",
	}
}
