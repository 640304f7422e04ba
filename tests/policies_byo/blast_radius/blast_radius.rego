# The blast radius of a plan (the OPA documentation's Terraform tutorial, Rego v1): a weighted
# count of the resources the plan creates, deletes and modifies. The limit and the weights
# per resource type are data (blast_radius.yaml).
package main

import input.terraform_plan as tfplan

limit := data.blast_radius.limit

weights := data.blast_radius.weights

resource_types := {resource_type | some resource_type, _ in weights}

changes_of(resource_type, action) := [rc |
	some rc in tfplan.resource_changes
	rc.type == resource_type
	action in rc.change.actions
]

score := s if {
	all_changes := [x |
		some resource_type, crud in weights
		del := crud.delete * count(changes_of(resource_type, "delete"))
		new := crud.create * count(changes_of(resource_type, "create"))
		mod := crud.modify * count(changes_of(resource_type, "update"))
		x := (del + new) + mod
	]
	s := sum(all_changes)
}

deny contains msg if {
	score > limit
	msg := sprintf("the plan's blast radius is %d, above the limit of %d", [score, limit])
}
