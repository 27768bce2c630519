terraform {
  required_version = ">= 1.5"

  required_providers {
    yandex = {
      source  = "yandex-cloud/yandex"
      version = "~> 0.150"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # The state holds every secret of the deployment: keep it in a private, versioned Object Storage
  # bucket, never on a laptop or in git. Uncomment, then `terraform init -migrate-state`; the
  # access key pair comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (a static key of a
  # service account with storage.editor on the bucket). `endpoints` needs Terraform >= 1.6.
  #
  # backend "s3" {
  #   endpoints = {
  #     s3       = "https://storage.yandexcloud.net"
  #     dynamodb = "https://docapi.serverless.yandexcloud.net/ru-central1/b1g.../etn..."
  #   }
  #   bucket         = "xrouter-terraform-state"
  #   key            = "prod/terraform.tfstate"
  #   region         = "ru-central1"
  #   dynamodb_table = "xrouter-terraform-locks" # a YDB serverless table, for state locking
  #
  #   skip_region_validation      = true
  #   skip_credentials_validation = true
  #   skip_requesting_account_id  = true
  #   skip_s3_checksum            = true
  # }
}
