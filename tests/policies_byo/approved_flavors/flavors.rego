# Stack components use approved flavors; development flavors outside production only
# (Rego v0: default, not, some, partial sets). The lists are data (flavors.yaml).
package main

default production = false

production {
	input.environment.name == "prod"
}

approved[flavor] {
	flavor := data.flavors.approved[_]
}

approved[flavor] {
	not production
	flavor := data.flavors.development[_]
}

deny[msg] {
	some i
	r := input.resources[i]
	r.kind == "StackComponent"
	not approved[r.spec.flavor]
	msg := sprintf("StackComponent/%s uses flavor %q, which is not approved in %s", [r.name, r.spec.flavor, input.environment.name])
}
