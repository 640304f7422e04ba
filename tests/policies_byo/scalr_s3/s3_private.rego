# Check S3 bucket is not public
# (Scalr's sample-tf-opa-policies shape, Rego v0; the import line reads input.terraform_plan
# where Scalr reads input.tfplan.)

package terraform

import input.terraform_plan as tfplan

deny[reason] {
	r = tfplan.resource_changes[_]
	r.mode == "managed"
	r.type == "aws_s3_bucket"
	r.change.after.acl == "public"

	reason := sprintf("%-40s :: S3 buckets must not be PUBLIC", [r.address])
}
