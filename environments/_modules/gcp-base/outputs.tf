output "artifact_bucket" {
  value = google_storage_bucket.artifacts.name
}

output "registry_uri" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.containers.repository_id}"
}

output "service_account_email" {
  value = google_service_account.stack.email
}

# The service account key JSON (the provider returns it base64-encoded), for the connector's
# service_account_json. Sensitive: Terraform and stackward never print it. Null without a key.
output "service_account_key" {
  value     = var.create_service_account_key ? base64decode(google_service_account_key.stack[0].private_key) : null
  sensitive = true
}
