# Installs hashicorp/local 2.1.0 through a tfmirror running on this machine
# (`cargo run --release -- serve`). The private namespace `myproviders` maps to the
# upstream provider hashicorp/local on releases.hashicorp.com (see config/tfmirror.toml).
#
#   export SSL_CERT_FILE="$PWD/certs/localhost.pem"   # trust the generated certificate
#   terraform init
terraform {
  required_providers {
    local = {
      source  = "localhost:8443/myproviders/local"
      version = "2.1.0"
    }
  }
}
