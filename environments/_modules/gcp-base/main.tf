# Base infrastructure of one GCP environment: the artifact bucket, the container registry
# and the service account the ZenML stack runs as (with a key for the ZenML connector, where
# the environment authenticates with one).
terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

locals {
  prefix = "zenml-${var.environment}"
  labels = merge(var.labels, { managed-by = "stackward" })
}

resource "google_storage_bucket" "artifacts" {
  project                     = var.project_id
  name                        = "${local.prefix}-artifacts-${var.project_id}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = var.public_access_prevention
  labels                      = local.labels

  versioning {
    enabled = var.bucket_versioning
  }
}

resource "google_artifact_registry_repository" "containers" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.prefix}-containers"
  format        = "DOCKER"
  labels        = local.labels
}

resource "google_service_account" "stack" {
  project      = var.project_id
  account_id   = "${local.prefix}-stack"
  display_name = "ZenML ${var.environment} stack"
}

resource "google_storage_bucket_iam_member" "stack_artifacts" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.stack.email}"
}

resource "google_artifact_registry_repository_iam_member" "stack_containers" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.containers.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.stack.email}"
}

# The key the environment's ZenML connector authenticates with (service-account auth). It is
# kept in the Terraform state, so the state backend must be private. Environments on keyless
# auth (prod: implicit) set create_service_account_key = false.
resource "google_service_account_key" "stack" {
  count              = var.create_service_account_key ? 1 : 0
  service_account_id = google_service_account.stack.name
}
