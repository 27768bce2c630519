# Cloud-agnostic: needs only a Kubernetes API (configured by the caller's providers).
terraform {
  required_version = ">= 1.5"

  required_providers {
    helm = {
      source = "hashicorp/helm"
    }
    kubernetes = {
      source = "hashicorp/kubernetes"
    }
    random = {
      source = "hashicorp/random"
    }
  }
}
