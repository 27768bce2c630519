# One autoscaled node group per pool and zone. A group per zone (rather than one group spanning
# three zones) lets the cluster autoscaler add a node in the zone a pending pod needs, which matters
# for the database and cache pools: their persistent volumes are zonal disks.

locals {
  node_groups = merge([
    for pool, spec in var.node_pools : {
      for zone in var.zones : "${pool}-${zone}" => merge(spec, { pool = pool, zone = zone })
    }
  ]...)
}

resource "yandex_kubernetes_node_group" "this" {
  for_each = local.node_groups

  cluster_id  = yandex_kubernetes_cluster.this.id
  name        = "${var.name}-${each.key}"
  description = "XRouter ${each.value.pool} nodes in ${each.value.zone}."
  version     = var.kubernetes_version
  labels      = merge(var.labels, { pool = each.value.pool })

  node_labels = { (var.pool_label_key) = each.value.pool }
  node_taints = [for taint in each.value.taints : "${taint.key}=${taint.value}:${taint.effect}"]

  instance_template {
    platform_id = var.platform_id

    resources {
      cores         = each.value.cores
      memory        = each.value.memory
      core_fraction = each.value.core_fraction
    }

    boot_disk {
      type = each.value.disk_type
      size = each.value.disk_size
    }

    network_interface {
      nat        = false
      subnet_ids = [yandex_vpc_subnet.this[each.value.zone].id]
      security_group_ids = [
        yandex_vpc_security_group.cluster.id,
        yandex_vpc_security_group.public_services.id,
      ]
    }

    scheduling_policy {
      preemptible = each.value.preemptible
    }

    container_runtime {
      type = "containerd"
    }
  }

  scale_policy {
    auto_scale {
      min     = each.value.min_per_zone
      max     = each.value.max_per_zone
      initial = each.value.min_per_zone
    }
  }

  allocation_policy {
    location {
      zone = each.value.zone
    }
  }

  # Surge one node before draining one, so a pool never runs below its size during upgrades.
  deploy_policy {
    max_expansion   = 1
    max_unavailable = 0
  }

  maintenance_policy {
    auto_upgrade = true
    auto_repair  = true

    maintenance_window {
      start_time = var.maintenance_window.start_time
      duration   = var.maintenance_window.duration
    }
  }
}
