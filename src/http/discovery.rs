//! `GET /.well-known/terraform.json`: tells Terraform where the registry protocol lives.

use actix_web::{web, HttpResponse};

use crate::{mirror::Mirror, protocol::discovery::DiscoveryDocument};

pub async fn document(mirror: web::Data<Mirror>) -> HttpResponse {
    HttpResponse::Ok().json(DiscoveryDocument::new(mirror.public_base()))
}
