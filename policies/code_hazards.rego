# Terraform code that runs programs or reads other state on the machine running Terraform:
# provisioners (run at apply), `external` data sources and `terraform_remote_state` with a
# local backend (both run at plan). Read from the plan's configuration
# (input.terraform_plan.configuration, `terraform show -json`), in modules at any depth.
package stackward.code_hazards

import data.lib.stackward as lib
import rego.v1

# Every resource and data block of the configuration: [address, module call at the root, block].
blocks contains [address, call, block] if {
	some path, block
	walk(object.get(input, ["terraform_plan", "configuration", "root_module"], {}), [path, block])
	is_block(path)
	calls := [sprintf("module.%s.", [path[i + 1]]) | some i, step in path; i % 3 == 0; step == "module_calls"]
	address := concat("", array.concat(calls, [block.address]))
	call := module_call(path)
}

module_call(path) := path[1] if count(path) > 2

module_call(path) := "" if count(path) == 2

# A block's path: ("module_calls", <name>, "module") repeated, then "resources", <index>.
is_block(path) if {
	n := count(path)
	n % 3 == 2
	path[n - 2] == "resources"
	every i, step in array.slice(path, 0, n - 2) {
		structural(i, step)
	}
}

structural(i, step) if {
	i % 3 == 0
	step == "module_calls"
}

structural(i, _) if i % 3 == 1

structural(i, step) if {
	i % 3 == 2
	step == "module"
}

# How messages name a module call: the Infrastructure document it comes from, and its source.
sources(call) := {sprintf("%v", [r.spec.source]) |
	some r in input.resources
	r.kind == "Infrastructure"
	r.name == call
}

origin(call) := sprintf("Infrastructure/%s (module %s)", [call, concat(", ", sources(call))]) if count(sources(call)) > 0

origin(call) := sprintf("module.%s", [call]) if {
	call != ""
	count(sources(call)) == 0
}

origin(call) := "the root module" if call == ""

deny_provisioner contains result if {
	some [address, call, block] in blocks
	block.mode == "managed"
	some provisioner in block.provisioners
	provisioner.type in lib.denied_provisioners
	result := {
		"msg": sprintf(
			"%s has a %s provisioner on %s: it would run commands from this change on the machine that applies",
			[origin(call), provisioner.type, address],
		),
		"resource": sprintf("Infrastructure/%s", [call]),
		"fix": "remove the provisioner; do the work with a provider's resource, or in a reviewed step outside Terraform",
		"policy_id": "SW011",
	}
}

deny_external_data contains result if {
	some [address, call, block] in blocks
	block.mode == "data"
	block.type == "external"
	result := {
		"msg": sprintf(
			"%s reads %s: an external data source runs a program from this change on the machine that plans",
			[origin(call), address],
		),
		"resource": sprintf("Infrastructure/%s", [call]),
		"fix": "remove the external data source; pass the value in as a module variable",
		"policy_id": "SW012",
	}
}

# A literal `backend = "local"`, or a backend that is not a literal (it may be local).
local_backend(block) if block.expressions.backend.constant_value == "local"

local_backend(block) if not "constant_value" in object.keys(object.get(block, ["expressions", "backend"], {}))

deny_local_remote_state contains result if {
	some [address, call, block] in blocks
	block.mode == "data"
	block.type == "terraform_remote_state"
	local_backend(block)
	result := {
		"msg": sprintf(
			"%s reads %s from a local backend (or one that is not a literal): it can read any state file on the machine that plans, another environment's included",
			[origin(call), address],
		),
		"resource": sprintf("Infrastructure/%s", [call]),
		"fix": "read the other state from its remote backend (gcs, s3, azurerm) written as a literal, or pass the values in as module variables",
		"policy_id": "SW013",
	}
}
