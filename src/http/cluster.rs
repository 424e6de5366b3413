//! The private route replicas on one bucket follow each other's downloads by
//! (`/_cluster/live/<location>`): authenticated by the secret they share (a header, never the
//! URL), answered like a plain `GET` of a file that is still arriving.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{files, ApiError};
use crate::mirror::{Mirror, PEER_SECRET_HEADER};

pub async fn live_archive(
    req: HttpRequest,
    mirror: web::Data<Mirror>,
    location: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let presented = req
        .headers()
        .get(PEER_SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    files::send(&req, mirror.peer_file(&location, presented).await?)
}
