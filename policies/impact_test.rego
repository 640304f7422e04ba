package stackward.impact_test

import data.stackward.impact
import rego.v1

change(action, schedules) := {
	"kind": "StackComponent", "name": "prod-orchestrator", "action": action,
	"impact": {"schedules": schedules, "deployments": [], "pipelines": ["training"]},
}

test_replacing_what_schedules_use_warns if {
	results := impact.warn_breaks_what_runs with input as {"changes": [change("replace", ["nightly"])]}
	count(results) == 1
	some r in results
	r.msg == "StackComponent/prod-orchestrator will be replaced while 1 active schedule(s) and 0 deployment(s) use it: nightly"
}

test_updates_and_unused_resources_pass if {
	count(impact.warn_breaks_what_runs) == 0 with input as {"changes": [change("update", ["nightly"]), change("delete", [])]}
}

test_a_plan_without_impact_passes if {
	count(impact.warn_breaks_what_runs) == 0 with input as {"changes": [{"kind": "Stack", "name": "s", "action": "delete"}]}
}
