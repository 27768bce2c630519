# Everything specific to Yandex Cloud lives in this module; the root pins the provider version.
terraform {
  required_version = ">= 1.5"

  required_providers {
    yandex = {
      source = "yandex-cloud/yandex"
    }
  }
}
