# Cloud resources: buckets encrypted and versioned, nothing public, machine types from the
# allow-list. Checked on Infrastructure variables (before Terraform runs) and on the
# Terraform plan (input.terraform_plan, `terraform show -json`) once one exists.
package stackward.infrastructure

import data.lib.stackward as lib
import rego.v1

module_variables contains [r, name, value] if {
	some r in input.resources
	r.kind == "Infrastructure"
	some name, value in r.spec.variables
}

deny_unversioned_bucket contains result if {
	some [r, name, value] in module_variables
	name in {"bucket_versioning", "versioning"}
	value == false
	result := {
		"msg": sprintf("%s turns bucket versioning off (%s: false)", [lib.id(r), name]),
		"resource": lib.id(r),
		"fix": sprintf("set spec.variables.%s: true so that artifacts can be recovered", [name]),
		"policy_id": "SW006",
	}
}

deny_unencrypted_bucket contains result if {
	some [r, name, value] in module_variables
	name in {"encryption", "encrypted", "bucket_encryption"}
	value == false
	result := {
		"msg": sprintf("%s turns bucket encryption off (%s: false)", [lib.id(r), name]),
		"resource": lib.id(r),
		"fix": sprintf("set spec.variables.%s: true (or give a KMS key)", [name]),
		"policy_id": "SW006",
	}
}

deny_public_access contains result if {
	some [r, name, value] in module_variables
	name == "public_access_prevention"
	value != "enforced"
	result := {
		"msg": sprintf("%s sets public_access_prevention to %q", [lib.id(r), value]),
		"resource": lib.id(r),
		"fix": "set spec.variables.public_access_prevention: enforced",
		"policy_id": "SW007",
	}
}

deny_public_access contains result if {
	some [r, name, value] in module_variables
	contains(name, "public")
	name != "public_access_prevention"
	value == true
	result := {
		"msg": sprintf("%s enables public access (%s: true)", [lib.id(r), name]),
		"resource": lib.id(r),
		"fix": sprintf("set spec.variables.%s: false; share through IAM instead", [name]),
		"policy_id": "SW007",
	}
}

deny_machine_type contains result if {
	some [r, name, value] in module_variables
	regex.match(`(^|_)(machine|instance)_type$`, name)
	not value in lib.allowed_machine_types
	result := {
		"msg": sprintf("%s asks for %s %q, which is not on the allow-list", [lib.id(r), name, value]),
		"resource": lib.id(r),
		"fix": sprintf("use one of: %s (the list is in policies/lib/stackward.rego)", [concat(", ", sort(lib.allowed_machine_types))]),
		"policy_id": "SW008",
	}
}

# The same rules on the Terraform plan.
planned(type) := [rc |
	some rc in object.get(input, ["terraform_plan", "resource_changes"], [])
	rc.type == type
	not "delete" in rc.change.actions
]

deny_unversioned_bucket contains result if {
	some rc in planned("google_storage_bucket")
	not rc.change.after.versioning[0].enabled
	result := {
		"msg": sprintf("Terraform would create or update bucket %s without versioning", [rc.address]),
		"fix": "enable versioning on the bucket in the module",
		"policy_id": "SW006",
	}
}

deny_public_access contains result if {
	some rc in planned("google_storage_bucket")
	rc.change.after.public_access_prevention != "enforced"
	result := {
		"msg": sprintf("Terraform would leave bucket %s open to public access", [rc.address]),
		"fix": "set public_access_prevention = \"enforced\" in the module",
		"policy_id": "SW007",
	}
}

deny_machine_type contains result if {
	some type in ["google_compute_instance", "aws_instance"]
	some rc in planned(type)
	some key in ["machine_type", "instance_type"]
	value := rc.change.after[key]
	not value in lib.allowed_machine_types
	result := {
		"msg": sprintf("Terraform would create %s with %s %q, which is not on the allow-list", [rc.address, key, value]),
		"fix": "use an allowed machine type (policies/lib/stackward.rego)",
		"policy_id": "SW008",
	}
}
