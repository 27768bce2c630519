# XRouter in production: a Managed Kubernetes cluster sized from the deployment document and the
# Helm release on it. Only module "cluster" and the yandex provider block know the cloud; another
# cloud means another cluster module with the same outputs.

locals {
  chart_path     = "${path.root}/../helm/xrouter"
  pool_label_key = "xrouter.ru/pool"

  # Each pool's pods select their pool's nodes and tolerate its taints.
  placement = {
    for pool, spec in var.node_pools : pool => {
      node_selector = { (local.pool_label_key) = pool }
      tolerations = [
        for taint in spec.taints : {
          key      = taint.key
          operator = "Equal"
          value    = taint.value
          effect   = taint.effect
        }
      ]
    }
  }
}

# Credentials come from the environment: YC_TOKEN, or YC_SERVICE_ACCOUNT_KEY_FILE for CI.
provider "yandex" {
  cloud_id  = var.cloud_id
  folder_id = var.folder_id
  zone      = var.zones[0]
}

provider "kubernetes" {
  host                   = module.cluster.endpoint
  cluster_ca_certificate = module.cluster.ca_certificate
  token                  = module.cluster.access_token
}

provider "helm" {
  kubernetes {
    host                   = module.cluster.endpoint
    cluster_ca_certificate = module.cluster.ca_certificate
    token                  = module.cluster.access_token
  }
}

module "cluster" {
  source = "./modules/yandex-k8s"

  name                 = var.name
  folder_id            = var.folder_id
  zones                = var.zones
  subnet_cidrs         = var.subnet_cidrs
  kubernetes_version   = var.kubernetes_version
  release_channel      = var.release_channel
  master_allowed_cidrs = var.master_allowed_cidrs
  public_ingress_cidrs = var.public_ingress_cidrs
  node_pools           = var.node_pools
  pool_label_key       = local.pool_label_key
  labels               = var.labels
}

# Generated once and kept in the state when var.key_secret is not given: the HMAC secret must
# never change, or every issued API key stops working.
resource "random_password" "key_secret" {
  length  = 48
  special = false
}

module "release" {
  source = "./modules/xrouter-release"

  chart_path            = local.chart_path
  namespace             = var.namespace
  image_tag             = var.image_tag
  image_repositories    = var.image_repositories
  gateway_replicas      = var.gateway_replicas
  router_replicas       = var.router_replicas
  gateway_service_type  = var.gateway_service_type
  gateway_host          = var.gateway_host
  gateway_tls_issuer    = var.gateway_tls_issuer
  catalog_toml          = var.catalog_path == null ? null : file(var.catalog_path)
  postgresql_ha_enabled = var.postgresql_ha_enabled
  postgresql_replicas   = var.postgresql_replicas
  redis_cluster_enabled = var.redis_cluster_enabled
  redis_nodes           = var.redis_nodes
  placement             = local.placement
  extra_values          = var.extra_values
  timeout_seconds       = var.helm_timeout_seconds

  db_password    = var.db_password
  redis_password = var.redis_password
  provider_keys  = var.provider_keys
  master_key     = var.master_key
  key_secret     = coalesce(var.key_secret, random_password.key_secret.result)

  # Pods can only start once the node groups exist.
  depends_on = [module.cluster]
}
