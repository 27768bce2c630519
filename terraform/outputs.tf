output "cluster_id" {
  description = "Managed Kubernetes cluster ID."
  value       = module.cluster.cluster_id
}

output "cluster_endpoint" {
  description = "Public endpoint of the Kubernetes API."
  value       = module.cluster.endpoint
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API."
  value       = module.cluster.ca_certificate
  sensitive   = true
}

output "kubeconfig_command" {
  description = "Adds the cluster to ~/.kube/config."
  value       = "yc managed-kubernetes cluster get-credentials --id ${module.cluster.cluster_id} --external"
}

output "node_group_ids" {
  description = "Node group ID by <pool>-<zone>."
  value       = module.cluster.node_group_ids
}

output "namespace" {
  description = "Namespace of the XRouter release."
  value       = module.release.namespace
}

output "release_revision" {
  description = "Helm revision deployed by the last apply."
  value       = module.release.revision
}

output "secret_name" {
  description = "Secret holding db-password, redis-password, provider-keys, master-key and key-secret."
  value       = module.release.secret_name
}
