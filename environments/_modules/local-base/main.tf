# Offline stand-in for cloud infrastructure: only Terraform's built-in terraform_data.
variable "environment" {
  type = string
}

variable "artifact_root" {
  type    = string
  default = ".stackward/artifacts"
}

resource "terraform_data" "artifact_store" {
  input = {
    path        = abspath("${var.artifact_root}/${var.environment}")
    environment = var.environment
  }
}

output "artifact_path" {
  value = terraform_data.artifact_store.output.path
}
