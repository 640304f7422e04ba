# Offline stand-in for the AWS resources of ZenML's AWS stack guide: an S3 bucket for
# artifacts, an ECR registry, a SageMaker execution role, an EKS cluster, an MLflow tracking
# server, and an IAM user whose access key the ZenML connector uses to assume its role.
#
# NOTHING HERE TALKS TO AWS. Every resource is Terraform's built-in terraform_data (no
# provider to download), and every output is a FAKE value shaped like the real one, derived
# from the inputs. Each block names the real resource it stands in for: swap them for the
# aws provider's resources (same output names) to build the real thing.

locals {
  prefix = "zenml-${var.environment}"
}

# Stands in for aws_s3_bucket.artifacts (versioned, encrypted, public access blocked).
resource "terraform_data" "artifact_bucket" {
  input = "${local.prefix}-artifacts-${var.account_id}"
}

# Stands in for aws_ecr_repository.containers: ZenML's aws container registry takes the
# account's registry URI.
resource "terraform_data" "container_registry" {
  input = "${var.account_id}.dkr.ecr.${var.region}.amazonaws.com"
}

# Stands in for aws_iam_role.sagemaker (the role SageMaker jobs run as) and
# aws_iam_role.connector (the role the ZenML connector assumes: S3, ECR, SageMaker, EKS).
resource "terraform_data" "roles" {
  input = {
    sagemaker = "arn:aws:iam::${var.account_id}:role/${local.prefix}-sagemaker"
    connector = "arn:aws:iam::${var.account_id}:role/${local.prefix}-connector"
  }
}

# Stands in for aws_eks_cluster.this (with its node group).
resource "terraform_data" "eks_cluster" {
  input = "${local.prefix}-cluster"
}

# Stands in for an MLflow tracking server (for example on ECS behind a load balancer, with
# basic auth) and its user.
resource "terraform_data" "mlflow" {
  input = {
    uri      = "https://mlflow.${local.prefix}.${var.region}.example.com"
    username = "zenml"
  }
}

# Stands in for aws_iam_user.connector with aws_iam_access_key.connector, and for the MLflow
# password (random_password). Its id is a fresh UUID made when it is created, so the fake
# credentials below are known only after apply, like real ones; raising credentials_version
# replaces it: a rotation.
resource "terraform_data" "credentials" {
  triggers_replace = [var.credentials_version]
}

locals {
  # FAKE credentials derived from the id above. Not valid anywhere.
  credentials_seed = sha256("${terraform_data.credentials.id}/${var.environment}")
}
