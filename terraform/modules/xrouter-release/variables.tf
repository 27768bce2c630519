variable "chart_path" {
  description = "Path of the XRouter Helm chart (the repository's helm/xrouter)."
  type        = string
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "xrouter"
}

variable "namespace" {
  description = "Namespace created for the release and its Secret."
  type        = string
  default     = "xrouter"
}

variable "image_tag" {
  description = "Tag of the gateway and router images to deploy (an XRouter release, never latest)."
  type        = string

  validation {
    condition     = var.image_tag != "" && var.image_tag != "latest"
    error_message = "Pin an image tag; \"latest\" makes rollouts unrepeatable."
  }
}

variable "image_repositories" {
  description = "Image repositories by component (gateway, router); a missing entry keeps the chart's default."
  type        = map(string)
  default     = {}
}

variable "gateway_replicas" {
  description = "Gateway replicas."
  type        = number
  default     = 3
}

variable "router_replicas" {
  description = "Router replicas."
  type        = number
  default     = 3
}

variable "gateway_host" {
  description = "The API's public host name, served over HTTPS by an Ingress (empty: no Ingress)."
  type        = string
  default     = ""
}

variable "gateway_tls_issuer" {
  description = "The cert-manager ClusterIssuer of gateway_host's certificate."
  type        = string
  default     = "letsencrypt-prod"
}

variable "gateway_service_type" {
  description = "Service type of the gateway: ClusterIP (behind the Ingress) or LoadBalancer (plain HTTP, trials only)."
  type        = string
  default     = "ClusterIP"

  validation {
    condition     = contains(["ClusterIP", "NodePort", "LoadBalancer"], var.gateway_service_type)
    error_message = "The gateway Service type must be ClusterIP, NodePort or LoadBalancer."
  }
}

variable "catalog_toml" {
  description = "The model catalog (TOML text, docs/configuration.md); null keeps the chart's demo catalog."
  type        = string
  default     = null
}

variable "postgresql_ha_enabled" {
  description = "Deploy the chart's PostgreSQL HA (false: an external database, the chart's externalDatabase.* through extra_values)."
  type        = bool
  default     = true
}

variable "postgresql_replicas" {
  description = "PostgreSQL HA instances (one primary, the rest synchronous or asynchronous standbys)."
  type        = number
  default     = 3
}

variable "redis_cluster_enabled" {
  description = "Deploy the chart's Redis Cluster (false: an external Redis, the chart's externalRedis.* through extra_values)."
  type        = bool
  default     = true
}

variable "redis_nodes" {
  description = "Redis Cluster nodes, masters and replicas together (one replica per master)."
  type        = number
  default     = 6

  validation {
    condition     = var.redis_nodes >= 6 && var.redis_nodes % 2 == 0
    error_message = "Redis Cluster needs at least 3 masters with one replica each: an even number >= 6."
  }
}

variable "placement" {
  description = <<-EOT
    Scheduling per pool (gateway, router, database, cache): the node selector and tolerations of its
    pods. A missing pool schedules anywhere, e.g. on a single-pool test cluster.
  EOT
  type = map(object({
    node_selector = map(string)
    tolerations = list(object({
      key      = string
      operator = string
      value    = optional(string)
      effect   = string
    }))
  }))
  default = {}
}

variable "extra_values" {
  description = "Further values files (YAML text) applied after the generated values."
  type        = list(string)
  default     = []
}

variable "timeout_seconds" {
  description = "How long Helm waits for every workload to become ready before rolling back."
  type        = number
  default     = 900
}

variable "db_password" {
  description = "Password of the xrouter PostgreSQL user (Secret key db-password)."
  type        = string
  sensitive   = true
}

variable "redis_password" {
  description = "Redis Cluster password (Secret key redis-password)."
  type        = string
  sensitive   = true
}

variable "provider_keys" {
  description = "Upstream credentials by the environment variable name the catalog's api_key_env gives (Secret key provider-keys, a dotenv file)."
  type        = map(string)
  sensitive   = true

  validation {
    condition = alltrue([
      for name, value in var.provider_keys :
      can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name)) && !strcontains(value, "\n")
    ])
    error_message = "Provider key names must be environment variable names and values single lines."
  }
}

variable "master_key" {
  description = "The operator's master key, XROUTER_MASTER_KEY (Secret key master-key)."
  type        = string
  sensitive   = true
}

variable "key_secret" {
  description = "HMAC secret of the API key hashes, XROUTER_KEY_SECRET (Secret key key-secret); changing it invalidates every issued key."
  type        = string
  sensitive   = true
}
