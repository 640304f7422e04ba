# Buckets carry the tags cost reports need; deletions are flagged (conftest's Terraform plan
# examples' shape, Rego v0).
package main

import input.terraform_plan as tfplan

required_tags = {"owner", "cost-center"}

is_create_or_update(actions) {
	actions[_] == "create"
}

is_create_or_update(actions) {
	actions[_] == "update"
}

tags_of(resource) = tags {
	tags := resource.change.after.tags
	tags != null
}

tags_of(resource) = {} {
	resource.change.after.tags == null
}

missing_tags(resource) = missing {
	provided := {tag | tags_of(resource)[tag]}
	missing := required_tags - provided
}

deny[msg] {
	resource := tfplan.resource_changes[_]
	resource.type == "aws_s3_bucket"
	is_create_or_update(resource.change.actions)
	missing := missing_tags(resource)
	count(missing) > 0
	msg := sprintf("%s is missing required tags: %s", [resource.address, concat(", ", sort(missing))])
}

warn[msg] {
	resource := tfplan.resource_changes[_]
	resource.change.actions[_] == "delete"
	msg := sprintf("%s will be deleted", [resource.address])
}
