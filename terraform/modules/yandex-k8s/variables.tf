variable "name" {
  description = "Prefix of every cloud resource name (network, subnets, service accounts, cluster, node groups)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "The name must be 3-32 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "folder_id" {
  description = "Yandex Cloud folder that holds every resource of this module."
  type        = string
}

variable "zones" {
  description = "Availability zones of the regional master, the subnets and the node groups (exactly three)."
  type        = list(string)

  validation {
    condition     = length(var.zones) == 3 && length(distinct(var.zones)) == 3
    error_message = "A regional master needs exactly three distinct zones."
  }
}

variable "subnet_cidrs" {
  description = "IPv4 CIDR of the node subnet in each zone, in the order of var.zones."
  type        = list(string)

  validation {
    condition     = alltrue([for cidr in var.subnet_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Every subnet CIDR must be a valid IPv4 CIDR block."
  }
}

variable "cluster_ipv4_range" {
  description = "Pod address range; must not overlap any subnet of the network."
  type        = string
  default     = "10.112.0.0/16"
}

variable "service_ipv4_range" {
  description = "Service (ClusterIP) address range; must not overlap any subnet of the network."
  type        = string
  default     = "10.96.0.0/16"
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the master and every node group."
  type        = string
  default     = "1.31"
}

variable "release_channel" {
  description = "Managed Kubernetes release channel: RAPID, REGULAR or STABLE."
  type        = string
  default     = "STABLE"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "The release channel must be RAPID, REGULAR or STABLE."
  }
}

variable "master_allowed_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (ports 443 and 6443): operators' and CI's addresses."
  type        = list(string)
}

variable "public_ingress_cidrs" {
  description = "CIDRs allowed to reach NodePorts, i.e. LoadBalancer Services such as the gateway's."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "node_pools" {
  description = <<-EOT
    Node pools by name. Each pool becomes one autoscaled node group per zone (min/max are per zone),
    nodes labelled <pool_label_key>=<pool name> and tainted with `taints`.
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

  validation {
    condition     = alltrue([for pool in values(var.node_pools) : pool.min_per_zone >= 0 && pool.min_per_zone <= pool.max_per_zone && pool.max_per_zone >= 1])
    error_message = "Every pool needs 0 <= min_per_zone <= max_per_zone and max_per_zone >= 1."
  }

  validation {
    condition     = alltrue([for name in keys(var.node_pools) : can(regex("^[a-z][a-z0-9-]{0,15}$", name))])
    error_message = "Pool names must be up to 16 lowercase letters, digits and hyphens."
  }
}

variable "pool_label_key" {
  description = "Node label whose value is the pool name; the chart's node selectors use it."
  type        = string
  default     = "xrouter.ru/pool"
}

variable "platform_id" {
  description = "Compute platform of the nodes (standard-v3 is available in every ru-central1 zone)."
  type        = string
  default     = "standard-v3"
}

variable "network_policy_provider" {
  description = "NetworkPolicy implementation; CALICO enforces the chart's NetworkPolicies."
  type        = string
  default     = "CALICO"
}

variable "master_logging" {
  description = "Send kube-apiserver, autoscaler, events and audit logs to the folder's default Cloud Logging group."
  type        = bool
  default     = true
}

variable "maintenance_window" {
  description = "Daily window (UTC) for automatic master and node upgrades."
  type = object({
    start_time = string
    duration   = string
  })
  default = {
    start_time = "02:00"
    duration   = "3h"
  }
}

variable "kms_rotation_period" {
  description = "Rotation period of the KMS key that encrypts Kubernetes Secrets in etcd."
  type        = string
  default     = "8760h"
}

variable "deletion_protection" {
  description = "Protect the KMS key from deletion: losing it makes every Secret in etcd unreadable."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Cloud labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}
