# Service accounts of the cluster and its nodes, their folder roles and the KMS key that encrypts
# Secrets in etcd. Roles are granted with *_iam_member (additive), never *_iam_binding, which would
# take the same role away from everyone else in the folder.

locals {
  cluster_roles = toset([
    "k8s.clusters.agent",  # manage node VMs, disks and routes
    "vpc.publicAdmin",     # public address of the master
    "load-balancer.admin", # LoadBalancer Services
    "logging.writer",      # master logs (var.master_logging)
  ])
  node_roles = toset([
    "container-registry.images.puller",
  ])
}

resource "yandex_iam_service_account" "cluster" {
  name        = "${var.name}-cluster"
  folder_id   = var.folder_id
  description = "Managed Kubernetes cluster ${var.name}: manages nodes, networking and load balancers."
}

resource "yandex_iam_service_account" "nodes" {
  name        = "${var.name}-nodes"
  folder_id   = var.folder_id
  description = "Nodes of the Managed Kubernetes cluster ${var.name}: pull images."
}

resource "yandex_resourcemanager_folder_iam_member" "cluster" {
  for_each = local.cluster_roles

  folder_id = var.folder_id
  role      = each.value
  member    = "serviceAccount:${yandex_iam_service_account.cluster.id}"
}

resource "yandex_resourcemanager_folder_iam_member" "nodes" {
  for_each = local.node_roles

  folder_id = var.folder_id
  role      = each.value
  member    = "serviceAccount:${yandex_iam_service_account.nodes.id}"
}

resource "yandex_kms_symmetric_key" "secrets" {
  name                = "${var.name}-k8s-secrets"
  folder_id           = var.folder_id
  description         = "Encrypts Kubernetes Secrets of the cluster ${var.name} in etcd."
  default_algorithm   = "AES_256"
  rotation_period     = var.kms_rotation_period
  deletion_protection = var.deletion_protection
  labels              = var.labels
}

resource "yandex_kms_symmetric_key_iam_member" "cluster" {
  symmetric_key_id = yandex_kms_symmetric_key.secrets.id
  role             = "kms.keys.encrypterDecrypter"
  member           = "serviceAccount:${yandex_iam_service_account.cluster.id}"
}
