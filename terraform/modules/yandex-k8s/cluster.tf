# The regional (three-zone) Managed Kubernetes master.

resource "yandex_kubernetes_cluster" "this" {
  name        = var.name
  folder_id   = var.folder_id
  description = "XRouter: gateway, router, PostgreSQL HA and Redis Cluster."
  labels      = var.labels

  network_id              = yandex_vpc_network.this.id
  cluster_ipv4_range      = var.cluster_ipv4_range
  service_ipv4_range      = var.service_ipv4_range
  network_policy_provider = var.network_policy_provider
  release_channel         = var.release_channel

  service_account_id      = yandex_iam_service_account.cluster.id
  node_service_account_id = yandex_iam_service_account.nodes.id

  master {
    version   = var.kubernetes_version
    public_ip = true
    security_group_ids = [
      yandex_vpc_security_group.cluster.id,
      yandex_vpc_security_group.master.id,
    ]

    regional {
      region = "ru-central1"

      dynamic "location" {
        for_each = yandex_vpc_subnet.this
        content {
          zone      = location.value.zone
          subnet_id = location.value.id
        }
      }
    }

    maintenance_policy {
      auto_upgrade = true

      maintenance_window {
        start_time = var.maintenance_window.start_time
        duration   = var.maintenance_window.duration
      }
    }

    master_logging {
      enabled                    = var.master_logging
      folder_id                  = var.folder_id
      kube_apiserver_enabled     = var.master_logging
      cluster_autoscaler_enabled = var.master_logging
      events_enabled             = var.master_logging
      audit_enabled              = var.master_logging
    }
  }

  kms_provider {
    key_id = yandex_kms_symmetric_key.secrets.id
  }

  # Without these the roles can be revoked before the cluster is deleted, and the deletion of the
  # cluster and its node groups then fails half-way.
  depends_on = [
    yandex_resourcemanager_folder_iam_member.cluster,
    yandex_resourcemanager_folder_iam_member.nodes,
    yandex_kms_symmetric_key_iam_member.cluster,
  ]
}
