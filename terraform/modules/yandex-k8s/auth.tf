# The identity Terraform itself uses, turned into a bearer token for the Kubernetes API: the root's
# kubernetes and helm providers authenticate with it, so no kubeconfig or static token is needed.
data "yandex_client_config" "this" {}
