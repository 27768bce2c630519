# The XRouter release: its namespace, the Secret every workload reads (the chart's
# secrets.existingSecret, shared with the PostgreSQL HA and Redis Cluster subcharts) and the Helm
# release, scheduled onto the pools given in var.placement.

locals {
  # The `provider-keys` key is a dotenv file (XROUTER_PROVIDER_KEYS_FILE): NAME=value lines.
  provider_keys_file = join("", [for name in sort(keys(var.provider_keys)) : "${name}=${var.provider_keys[name]}\n"])

  secret_name = kubernetes_secret_v1.xrouter.metadata[0].name

  # nodeSelector and tolerations of each pool's pods, in the shape the chart and subcharts take.
  scheduling = {
    for pool in ["gateway", "router", "database", "cache"] : pool => {
      nodeSelector = try(var.placement[pool].node_selector, {})
      tolerations = [
        for toleration in try(var.placement[pool].tolerations, []) :
        { for field, value in toleration : field => value if value != null }
      ]
    }
  }

  images = {
    for component in ["gateway", "router"] : component => merge(
      { tag = var.image_tag },
      { for repository in compact([lookup(var.image_repositories, component, "")]) : "repository" => repository },
    )
  }

  values = merge(
    {
      image   = local.images
      secrets = { existingSecret = local.secret_name, create = false }
      gateway = merge(local.scheduling.gateway, {
        replicaCount = var.gateway_replicas
        service      = { type = var.gateway_service_type }
        ingress = {
          enabled = var.gateway_host != ""
          host    = var.gateway_host
          issuer  = { name = var.gateway_tls_issuer, kind = "ClusterIssuer" }
        }
      })
      router = merge(local.scheduling.router, { replicaCount = var.router_replicas })
      "postgresql-ha" = {
        enabled    = var.postgresql_ha_enabled
        postgresql = merge(local.scheduling.database, { replicaCount = var.postgresql_replicas, existingSecret = local.secret_name })
        pgpool     = merge(local.scheduling.database, { existingSecret = local.secret_name })
      }
      "redis-cluster" = {
        enabled                   = var.redis_cluster_enabled
        existingSecret            = local.secret_name
        existingSecretPasswordKey = "redis-password"
        cluster                   = { nodes = var.redis_nodes, replicas = 1 }
        redis                     = local.scheduling.cache
        updateJob                 = local.scheduling.cache
      }
    },
    { for toml in compact([var.catalog_toml]) : "catalog" => { toml = toml } },
  )
}

resource "kubernetes_namespace_v1" "xrouter" {
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of"    = "xrouter"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }
}

# Passwords of the PostgreSQL HA subchart's own accounts: generated once and kept in the state, so
# they stay the same across upgrades. Unused when postgresql_ha_enabled is false.
resource "random_password" "postgresql_ha" {
  for_each = toset(["postgres-password", "repmgr-password", "admin-password", "sr-check-password"])

  length  = 32
  special = false
}

resource "kubernetes_secret_v1" "xrouter" {
  metadata {
    name      = "xrouter-secrets"
    namespace = kubernetes_namespace_v1.xrouter.metadata[0].name
    labels = {
      "app.kubernetes.io/part-of"    = "xrouter"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  type = "Opaque"
  data = {
    # XRouter's own keys.
    "db-password"    = var.db_password
    "redis-password" = var.redis_password
    "provider-keys"  = local.provider_keys_file
    "master-key"     = var.master_key
    "key-secret"     = var.key_secret
    # The Bitnami PostgreSQL HA chart's keys: `password` is the xrouter user's, the same as
    # db-password; Redis Cluster reads redis-password.
    "password"          = var.db_password
    "postgres-password" = random_password.postgresql_ha["postgres-password"].result
    "repmgr-password"   = random_password.postgresql_ha["repmgr-password"].result
    "admin-password"    = random_password.postgresql_ha["admin-password"].result
    "sr-check-password" = random_password.postgresql_ha["sr-check-password"].result
  }
}

# No secret enters the release's values: the chart and both subcharts read them from the Secret
# above, so they never land in Helm's release history either.
resource "helm_release" "xrouter" {
  name      = var.release_name
  chart     = var.chart_path
  namespace = kubernetes_namespace_v1.xrouter.metadata[0].name
  # The namespace is created above, before the Secret the pods need at their first start.
  create_namespace  = false
  dependency_update = true
  atomic            = true
  cleanup_on_fail   = true
  wait              = true
  timeout           = var.timeout_seconds
  max_history       = 10

  values = concat([yamlencode(local.values)], var.extra_values)
}
