output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.xrouter.namespace
}

output "release_name" {
  description = "Helm release name."
  value       = helm_release.xrouter.name
}

output "revision" {
  description = "Helm revision deployed by the last apply."
  value       = helm_release.xrouter.metadata[0].revision
}

output "secret_name" {
  description = "Name of the Secret holding db-password, redis-password, provider-keys, master-key and key-secret."
  value       = kubernetes_secret_v1.xrouter.metadata[0].name
}
