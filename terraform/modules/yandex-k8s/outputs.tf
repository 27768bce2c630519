output "cluster_id" {
  description = "ID of the Managed Kubernetes cluster (yc managed-kubernetes cluster get-credentials --id ...)."
  value       = yandex_kubernetes_cluster.this.id
}

output "endpoint" {
  description = "Public HTTPS endpoint of the Kubernetes API."
  value       = yandex_kubernetes_cluster.this.master[0].external_v4_endpoint
}

output "ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API."
  value       = yandex_kubernetes_cluster.this.master[0].cluster_ca_certificate
  sensitive   = true
}

output "access_token" {
  description = "Short-lived IAM token of the identity running Terraform, accepted by the Kubernetes API."
  value       = data.yandex_client_config.this.iam_token
  sensitive   = true
}

output "network_id" {
  description = "ID of the VPC network."
  value       = yandex_vpc_network.this.id
}

output "subnet_ids" {
  description = "Node subnet ID by zone."
  value       = { for zone, subnet in yandex_vpc_subnet.this : zone => subnet.id }
}

output "node_group_ids" {
  description = "Node group ID by <pool>-<zone>; the release waits for these (via depends_on on the module)."
  value       = { for key, group in yandex_kubernetes_node_group.this : key => group.id }
}

output "pool_label_key" {
  description = "Node label whose value is the pool name."
  value       = var.pool_label_key
}
