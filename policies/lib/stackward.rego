# Helpers shared by the default policies. Outside the `stackward` namespace, so no rule
# here is evaluated as a check.
package lib.stackward

import rego.v1

# An environment is production when it is named prod, or labelled tier: production or
# environment: prod either in the change or on the base branch (input.base): a pull request
# that removes the label is still judged as production.
production_labels := {"tier": "production", "environment": "prod"}

production if input.environment.name == "prod"

production if {
	some key, value in production_labels
	input.environment.labels[key] == value
}

production if {
	some key, value in production_labels
	input.base.environment.labels[key] == value
}

# Every environment name the repository has, in the change or on the base branch.
environments := {name | some name in input.environments} | {name | some name in object.get(input, ["base", "environments"], [])}

# Auth methods that rely on a long-lived key or password (ZenML's names).
long_lived_key_methods := {
	"service-account", # gcp: service account key JSON
	"user-account", # gcp: user credentials
	"impersonation", # gcp: impersonates from a service account key
	"secret-key", # aws: access key id + secret
	"service-principal", # azure: client secret
	"password", # docker, kubernetes
}

# Environments that may use local (single-machine) flavors.
local_flavor_environments := {"dev", "local"}

local_flavors := {"local", "local_docker"}

# Labels every resource must carry.
required_labels := {"environment", "team"}

# Machine and instance types teams may request.
allowed_machine_types := {
	"e2-standard-4", "e2-standard-8", "n2-standard-4", "n2-standard-8", "n2-standard-16",
	"n1-standard-4", "n1-standard-8", "g2-standard-8", "a2-highgpu-1g",
	"m5.large", "m5.xlarge", "m5.2xlarge", "g5.xlarge", "g5.2xlarge",
	"Standard_D4s_v5", "Standard_D8s_v5", "Standard_NC6s_v3",
}

# Terraform provisioners that run commands or copy files on or from the machine running Terraform.
denied_provisioners := {"local-exec", "remote-exec", "file"}

# The pull-request label that allows deleting or replacing in production.
allow_destroy_label := "stackward:allow-destroy"

id(r) := sprintf("%s/%s", [r.kind, r.name])

where(r) := sprintf("%s:%d", [r.source.file, r.source.line]) if r.source

where(r) := id(r) if not r.source
