variable "project_id" {
  type        = string
  description = "GCP project holding the environment's resources."
}

variable "region" {
  type = string
}

variable "environment" {
  type = string
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "bucket_versioning" {
  type    = bool
  default = true
}

variable "public_access_prevention" {
  type    = string
  default = "enforced"
}

variable "create_service_account_key" {
  type        = bool
  default     = true
  description = "Create a key for the stack service account (for service-account connector auth)."
}
