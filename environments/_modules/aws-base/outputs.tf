output "artifact_bucket" {
  value = terraform_data.artifact_bucket.output
}

output "registry_uri" {
  value = terraform_data.container_registry.output
}

output "sagemaker_execution_role_arn" {
  value = terraform_data.roles.output.sagemaker
}

output "connector_role_arn" {
  value = terraform_data.roles.output.connector
}

output "eks_cluster_name" {
  value = terraform_data.eks_cluster.output
}

output "mlflow_tracking_uri" {
  value = terraform_data.mlflow.output.uri
}

# The outputs below feed ZenML secrets and the connector: sensitive, so neither Terraform nor
# stackward prints them. All FAKE (see main.tf).

output "mlflow_username" {
  value     = terraform_data.mlflow.output.username
  sensitive = true
}

output "mlflow_password" {
  value     = substr(sha256("mlflow/${local.credentials_seed}"), 0, 32)
  sensitive = true
}

# Shaped like an IAM access key id: AKIA and 16 upper-case letters or digits.
output "iam_access_key_id" {
  value     = "AKIA${upper(substr(local.credentials_seed, 0, 16))}"
  sensitive = true
}

output "iam_secret_access_key" {
  value     = substr(base64sha256("secret/${local.credentials_seed}"), 0, 40)
  sensitive = true
}
