output "artifact_bucket" {
  value = google_storage_bucket.artifacts.name
}

output "registry_uri" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.containers.repository_id}"
}

output "service_account_email" {
  value = google_service_account.stack.email
}
