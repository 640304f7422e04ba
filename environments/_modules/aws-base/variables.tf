variable "environment" {
  type = string
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "account_id" {
  type        = string
  default     = "123456789012" # the account id AWS's own documentation uses
  description = "AWS account the (stand-in) resources belong to."
}

variable "credentials_version" {
  type        = number
  default     = 1
  description = "Raise to rotate the (stand-in) IAM access key and MLflow password."
}
