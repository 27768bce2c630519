# One network, a subnet per zone, a NAT gateway for egress (nodes get no public addresses) and the
# security groups Managed Kubernetes needs.

locals {
  subnets = { for index, zone in var.zones : zone => var.subnet_cidrs[index] }
}

resource "yandex_vpc_network" "this" {
  name      = var.name
  folder_id = var.folder_id
  labels    = var.labels
}

resource "yandex_vpc_gateway" "egress" {
  name      = "${var.name}-egress"
  folder_id = var.folder_id
  labels    = var.labels

  shared_egress_gateway {}
}

resource "yandex_vpc_route_table" "egress" {
  name       = "${var.name}-egress"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id
  labels     = var.labels

  static_route {
    destination_prefix = "0.0.0.0/0"
    gateway_id         = yandex_vpc_gateway.egress.id
  }
}

resource "yandex_vpc_subnet" "this" {
  for_each = local.subnets

  name           = "${var.name}-${each.key}"
  folder_id      = var.folder_id
  zone           = each.key
  network_id     = yandex_vpc_network.this.id
  v4_cidr_blocks = [each.value]
  route_table_id = yandex_vpc_route_table.egress.id
  labels         = var.labels
}

# Traffic inside the cluster: master <-> nodes, node <-> node, pod <-> pod, load balancer checks.
resource "yandex_vpc_security_group" "cluster" {
  name       = "${var.name}-cluster"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id
  labels     = var.labels

  ingress {
    description       = "Network load balancer health checks"
    protocol          = "TCP"
    predefined_target = "loadbalancer_healthchecks"
    from_port         = 0
    to_port           = 65535
  }

  ingress {
    description       = "Master and nodes of this cluster"
    protocol          = "ANY"
    predefined_target = "self_security_group"
    from_port         = 0
    to_port           = 65535
  }

  ingress {
    description    = "Pods and services"
    protocol       = "ANY"
    v4_cidr_blocks = [var.cluster_ipv4_range, var.service_ipv4_range]
    from_port      = 0
    to_port        = 65535
  }

  ingress {
    description    = "ICMP from private networks (path MTU discovery, diagnostics)"
    protocol       = "ICMP"
    v4_cidr_blocks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
  }

  egress {
    description    = "Anything outbound: images, LLM providers, cloud APIs"
    protocol       = "ANY"
    v4_cidr_blocks = ["0.0.0.0/0"]
    from_port      = 0
    to_port        = 65535
  }
}

# The Kubernetes API, reachable only from the operators' networks.
resource "yandex_vpc_security_group" "master" {
  name       = "${var.name}-master"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id
  labels     = var.labels

  ingress {
    description    = "Kubernetes API (HTTPS)"
    protocol       = "TCP"
    v4_cidr_blocks = var.master_allowed_cidrs
    port           = 443
  }

  ingress {
    description    = "Kubernetes API"
    protocol       = "TCP"
    v4_cidr_blocks = var.master_allowed_cidrs
    port           = 6443
  }
}

# NodePorts behind LoadBalancer Services (the gateway's public endpoint).
resource "yandex_vpc_security_group" "public_services" {
  name       = "${var.name}-public-services"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id
  labels     = var.labels

  ingress {
    description    = "NodePort range behind network load balancers"
    protocol       = "TCP"
    v4_cidr_blocks = var.public_ingress_cidrs
    from_port      = 30000
    to_port        = 32767
  }
}
