# Non-secret settings: terraform.tfvars / -var-file (see prod.tfvars.example).
# Secrets (sensitive, no default): TF_VAR_* environment variables only.

variable "cloud_id" {
  description = "Yandex Cloud ID (b1g...)."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder ID (b1g...) that holds every resource."
  type        = string
}

variable "name" {
  description = "Prefix of every cloud resource name."
  type        = string
  default     = "xrouter"
}

variable "zones" {
  description = "The three availability zones of the regional master, subnets and node groups."
  type        = list(string)
  default     = ["ru-central1-a", "ru-central1-b", "ru-central1-d"]
}

variable "subnet_cidrs" {
  description = "Node subnet CIDR per zone, in the order of zones."
  type        = list(string)
  default     = ["10.10.0.0/20", "10.11.0.0/20", "10.12.0.0/20"]
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the master and the node groups."
  type        = string
  default     = "1.31"
}

variable "release_channel" {
  description = "Managed Kubernetes release channel (RAPID, REGULAR, STABLE)."
  type        = string
  default     = "STABLE"
}

variable "master_allowed_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API: the operators' and CI's addresses (Terraform itself needs it)."
  type        = list(string)
}

variable "public_ingress_cidrs" {
  description = "CIDRs allowed to reach LoadBalancer Services (the public gateway)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "node_pools" {
  description = <<-EOT
    Node pools, sized per node from the deployment document (gateway 4 cores/8 GB, router 8/16,
    database 8/32, cache 4/16). One autoscaled node group per pool and zone: min/max are per zone.
    The stateless pools stay untainted so cluster add-ons (CoreDNS, metrics-server) have room;
    database and cache nodes are tainted for their own pods.
  EOT
  type = map(object({
    cores         = number
    memory        = number
    core_fraction = optional(number, 100)
    disk_type     = optional(string, "network-ssd")
    disk_size     = optional(number, 64)
    min_per_zone  = number
    max_per_zone  = number
    preemptible   = optional(bool, false)
    taints = optional(list(object({
      key    = string
      value  = string
      effect = string
    })), [])
  }))
  default = {
    gateway = {
      cores        = 4
      memory       = 8
      min_per_zone = 1
      max_per_zone = 3
    }
    router = {
      cores        = 8
      memory       = 16
      min_per_zone = 1
      max_per_zone = 3
    }
    database = {
      cores        = 8
      memory       = 32
      disk_size    = 100
      min_per_zone = 1
      max_per_zone = 1
      taints       = [{ key = "xrouter.ru/pool", value = "database", effect = "NoSchedule" }]
    }
    cache = {
      cores        = 4
      memory       = 16
      disk_size    = 100
      min_per_zone = 1
      max_per_zone = 2
      taints       = [{ key = "xrouter.ru/pool", value = "cache", effect = "NoSchedule" }]
    }
  }

  validation {
    condition     = sort(keys(var.node_pools)) == sort(["gateway", "router", "database", "cache"])
    error_message = "node_pools must define exactly the pools gateway, router, database and cache."
  }
}

variable "labels" {
  description = "Cloud labels put on every resource that takes labels."
  type        = map(string)
  default     = { project = "xrouter" }
}

variable "namespace" {
  description = "Kubernetes namespace of the release."
  type        = string
  default     = "xrouter"
}

variable "image_tag" {
  description = "XRouter image tag to deploy (gateway and router)."
  type        = string
}

variable "image_repositories" {
  description = "Image repository per component (gateway, router), e.g. a Container Registry path; empty: the chart's defaults."
  type        = map(string)
  default     = {}
}

variable "gateway_replicas" {
  description = "Gateway replicas (one per zone at least)."
  type        = number
  default     = 3
}

variable "router_replicas" {
  description = "Router replicas (the document's three)."
  type        = number
  default     = 3
}

variable "gateway_service_type" {
  description = "Service type of the gateway: ClusterIP (the default: clients reach it over HTTPS through the Ingress of gateway_host) or LoadBalancer (a network load balancer in front of the nodes, plain HTTP: for trials only)."
  type        = string
  default     = "ClusterIP"
}

variable "gateway_host" {
  description = "The public host name of the API: an ingress-nginx Ingress terminates TLS for it with a cert-manager certificate (HTTP redirected to HTTPS). Empty: no Ingress."
  type        = string
  default     = ""
}

variable "gateway_tls_issuer" {
  description = "The cert-manager ClusterIssuer that signs the certificate of gateway_host."
  type        = string
  default     = "letsencrypt-prod"
}

variable "catalog_path" {
  description = "Path (relative to this directory) of the model catalog TOML to deploy; null keeps the chart's demo catalog."
  type        = string
  default     = null
}

variable "postgresql_ha_enabled" {
  description = "Run PostgreSQL HA in the cluster (false: an external database, externalDatabase.* in extra_values)."
  type        = bool
  default     = true
}

variable "postgresql_replicas" {
  description = "PostgreSQL HA instances (the document's three: one per zone)."
  type        = number
  default     = 3
}

variable "redis_cluster_enabled" {
  description = "Run Redis Cluster in the cluster (false: an external Redis Cluster, externalRedis.* in extra_values)."
  type        = bool
  default     = true
}

variable "redis_nodes" {
  description = "Redis Cluster nodes, masters and replicas together (the document's six: three masters, one replica each)."
  type        = number
  default     = 6
}

variable "extra_values" {
  description = "Further Helm values files (YAML text), applied after the generated values."
  type        = list(string)
  default     = []
}

variable "helm_timeout_seconds" {
  description = "How long the Helm release may take to become ready before it is rolled back."
  type        = number
  default     = 900
}

# --- Secrets: TF_VAR_db_password, TF_VAR_redis_password, TF_VAR_provider_keys, TF_VAR_master_key,
# --- TF_VAR_key_secret. Never in a tfvars file.

variable "db_password" {
  description = "Password of the xrouter PostgreSQL user."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.db_password) >= 16
    error_message = "The database password must be at least 16 characters."
  }
}

variable "redis_password" {
  description = "Redis Cluster password."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.redis_password) >= 16
    error_message = "The Redis password must be at least 16 characters."
  }
}

variable "provider_keys" {
  description = "Upstream credentials by the variable name the catalog's api_key_env gives, e.g. {\"OPENAI_API_KEY\" = \"sk-...\"}."
  type        = map(string)
  sensitive   = true
}

variable "master_key" {
  description = "The operator's master key (XROUTER_MASTER_KEY)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.master_key) >= 32
    error_message = "The master key must be at least 32 characters."
  }
}

variable "key_secret" {
  description = "HMAC secret of the API key hashes (XROUTER_KEY_SECRET). Optional: when unset one is generated and kept in the state; never change it afterwards."
  type        = string
  sensitive   = true
  nullable    = true
  default     = null
}
