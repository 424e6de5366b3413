//! What a Terraform configuration asks for: `required_providers` in `*.tf` files and the exact
//! versions of a `.terraform.lock.hcl`, for `tfmirror prefetch --from DIR` (`tfmirror lock`
//! reads the lock file whole, with `lock_file`). Text in, addresses out; reading the files is
//! the caller's business.

use std::collections::BTreeMap;

use hcl::{Body, Expression, ObjectKey};

use super::full_provider_address;

/// Provider address (`registry.terraform.io/hashicorp/aws`) → version constraint, if any.
pub type Wanted = BTreeMap<String, Option<String>>;

/// Adds the providers of one `.tf` file's `terraform { required_providers { … } }` blocks.
pub fn add_required_providers(tf_text: &str, wanted: &mut Wanted) -> Result<(), hcl::Error> {
    let body: Body = hcl::parse(tf_text)?;
    for terraform in body.blocks().filter(|b| b.identifier() == "terraform") {
        for required in terraform
            .body()
            .blocks()
            .filter(|b| b.identifier() == "required_providers")
        {
            for attribute in required.body().attributes() {
                let local_name = attribute.key();
                // `aws = "~> 5.0"` is the legacy form: source implied, value the version.
                let (source, version) = match attribute.expr() {
                    Expression::String(version) => (None, Some(version.clone())),
                    Expression::Object(fields) => {
                        let field = |name: &str| {
                            fields.iter().find_map(|(key, value)| {
                                let key = match key {
                                    ObjectKey::Identifier(id) => id.as_str(),
                                    ObjectKey::Expression(Expression::String(s)) => s.as_str(),
                                    _ => return None,
                                };
                                match value {
                                    Expression::String(s) if key == name => Some(s.clone()),
                                    _ => None,
                                }
                            })
                        };
                        (field("source"), field("version"))
                    }
                    _ => continue,
                };
                let source = source.unwrap_or_else(|| format!("hashicorp/{local_name}"));
                let address = full_provider_address(&source);
                // Several modules may constrain one provider; keep all their constraints.
                let entry = wanted.entry(address).or_default();
                *entry = match (entry.take(), version) {
                    (Some(a), Some(b)) => Some(format!("{a}, {b}")),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    Ok(())
}

/// Pins every provider of a `.terraform.lock.hcl` to its locked version.
pub fn apply_lock_file(lock_text: &str, wanted: &mut Wanted) -> Result<(), hcl::Error> {
    let body: Body = hcl::parse(lock_text)?;
    for provider in body.blocks().filter(|b| b.identifier() == "provider") {
        let Some(address) = provider.labels().first() else {
            continue;
        };
        let version = provider
            .body()
            .attributes()
            .find(|a| a.key() == "version")
            .and_then(|a| match a.expr() {
                Expression::String(v) => Some(v.clone()),
                _ => None,
            });
        if let Some(version) = version {
            wanted.insert(
                full_provider_address(address.as_str()),
                Some(format!("= {version}")),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn required_providers_in_both_forms_and_the_lock_file_wins() {
        let mut wanted = Wanted::new();
        add_required_providers(
            r#"
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws   = { source = "hashicorp/aws", version = "~> 5.0" }
    local = {
      source  = "localhost:8443/myproviders/local"
      version = ">= 2.0"
    }
    null = "~> 3.1"
  }
}
resource "null_resource" "x" {}
"#,
            &mut wanted,
        )
        .unwrap();
        add_required_providers(
            "terraform {\n  required_providers {\n    aws = { version = \"< 5.40\" }\n  }\n}\n",
            &mut wanted,
        )
        .unwrap();
        assert_eq!(
            wanted["registry.terraform.io/hashicorp/aws"].as_deref(),
            Some("~> 5.0, < 5.40")
        );
        assert_eq!(
            wanted["localhost:8443/myproviders/local"].as_deref(),
            Some(">= 2.0")
        );
        assert_eq!(
            wanted["registry.terraform.io/hashicorp/null"].as_deref(),
            Some("~> 3.1")
        );

        apply_lock_file(
            r#"
# This file is maintained automatically by "terraform init".
provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.31.0"
  constraints = "~> 5.0"
  hashes = ["h1:abc="]
}
"#,
            &mut wanted,
        )
        .unwrap();
        assert_eq!(
            wanted["registry.terraform.io/hashicorp/aws"].as_deref(),
            Some("= 5.31.0")
        );
    }
}
