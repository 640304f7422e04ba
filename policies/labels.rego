# Every resource carries the required labels, and its environment label is its own.
package stackward.labels

import data.lib.stackward as lib
import rego.v1

deny_missing_label contains result if {
	some r in input.resources
	some label in lib.required_labels
	not r.labels[label]
	result := {
		"msg": sprintf("%s has no %q label", [lib.id(r), label]),
		"resource": lib.id(r),
		"fix": sprintf("add metadata.labels.%s, or set it for the whole environment in the Environment's spec.labels", [label]),
		"policy_id": "SW002",
	}
}

deny_wrong_environment_label contains result if {
	some r in input.resources
	r.labels.environment
	r.labels.environment != input.environment.name
	result := {
		"msg": sprintf("%s is labelled environment=%s but belongs to %s", [lib.id(r), r.labels.environment, input.environment.name]),
		"resource": lib.id(r),
		"fix": sprintf("set metadata.labels.environment: %s (or remove it: the environment stamps it)", [input.environment.name]),
		"policy_id": "SW002",
	}
}
