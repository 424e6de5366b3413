//! An S3-compatible bucket: the shared tier that replicas of one mirror keep their cache in.
//!
//! The only code that knows about buckets (with `store::tiered`, which puts the local disk in
//! front of one). It speaks in `layout` locations under an optional key prefix and never
//! builds a key from a name. What it relies on from the service:
//! - small documents are single PUTs, which S3 makes visible whole or not at all; a document
//!   created only if absent is a PUT with `If-None-Match: *` (`PutMode::Create`);
//! - large files go up as multipart uploads, a few parts in memory at a time, and become
//!   visible under their key only when the upload completes; one dropped or aborted leaves
//!   nothing under the key (a service's lifecycle rule removes the parts of one a crash left);
//! - nothing is listed on the request path: listings are for the operations;
//! - a presigned `GET` URL of an object is signed here, for `storage.redirect = "presigned"`.
//!
//! Requests are retried briefly and time out quickly: a bucket that is down must turn into a
//! clear answer in seconds, not hang a `terraform init`.

use std::{fmt, io, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{stream::BoxStream, StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as Key,
    signer::{Method, Signer},
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{backend::Listing, layout::Location, StoreError};

/// Size of one part of a multipart upload (S3's minimum but for the last part).
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once: memory per upload is about this many plus one parts
/// (two in flight cost a replica 5 MB more for no faster finish: `cargo bench --bench replicas`).
const PARTS_IN_FLIGHT: usize = 1;
/// Attempts after the first for a request that failed in a way worth retrying.
const RETRIES: usize = 2;
/// Longest time spent retrying one request.
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest time for one request, body included (a part, a document, a streamed archive).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the bucket is and how to sign for it.
#[derive(Clone)]
pub struct BucketSettings {
    pub bucket: String,
    /// Keys start with this (`mirror/`), or nothing.
    pub prefix: String,
    /// Any S3-compatible service; `None` for AWS S3.
    pub endpoint: Option<String>,
    pub region: String,
    /// Static credentials; `None` for the standard AWS environment variables or profile.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for BucketSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketSettings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The same client, for presigned URLs (`storage.redirect = "presigned"`).
    signer: Arc<AmazonS3>,
    name: String,
    /// `""` or segments ending in `/`.
    prefix: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Bucket {
    /// A client for the bucket; nothing is sent until it is used.
    pub fn open(settings: &BucketSettings) -> Result<Self, StoreError> {
        let prefix = settings.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &settings.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| StoreError::Bucket {
            location: format!("s3://{}", settings.bucket),
            reason: e.to_string(),
        })?;
        let store = Arc::new(store);
        Ok(Self {
            signer: store.clone(),
            store,
            name: settings.bucket.clone(),
            prefix,
        })
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.name, self.prefix)
    }

    pub fn show(&self, at: &Location) -> String {
        format!("s3://{}/{}{}", self.name, self.prefix, at.as_str())
    }

    fn key(&self, at: &Location) -> Key {
        Key::from(format!("{}{}", self.prefix, at.as_str()))
    }

    fn error(&self, at: &Location, error: &object_store::Error) -> StoreError {
        StoreError::Bucket {
            location: self.show(at),
            reason: reason(error),
        }
    }

    /// A whole small object and when it was written, or `None`.
    pub async fn get(
        &self,
        at: &Location,
    ) -> Result<Option<(Vec<u8>, std::time::SystemTime)>, StoreError> {
        let got = match self.store.get(&self.key(at)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(at, &e)),
        };
        let modified = got.meta.last_modified.into();
        let bytes = got.bytes().await.map_err(|e| self.error(at, &e))?;
        Ok(Some((bytes.to_vec(), modified)))
    }

    /// An object's length and its bytes as they arrive, or `None`.
    pub async fn get_stream(
        &self,
        at: &Location,
    ) -> Result<Option<(u64, BoxStream<'static, io::Result<Bytes>>)>, StoreError> {
        match self.store.get(&self.key(at)).await {
            Ok(got) => {
                let len = got.meta.size;
                let location = self.show(at);
                let stream = got
                    .into_stream()
                    .map_err(move |e| io::Error::other(format!("{location}: {}", reason(&e))))
                    .boxed();
                Ok(Some((len, stream)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(at, &e)),
        }
    }

    /// A URL anyone may `GET` the object with for `ttl`, signed here (with static
    /// credentials, no request is sent). It holds a signature, not the secret.
    pub async fn presigned_get(
        &self,
        at: &Location,
        ttl: Duration,
    ) -> Result<url::Url, StoreError> {
        self.signer
            .signed_url(Method::GET, &self.key(at), ttl)
            .await
            .map_err(|e| self.error(at, &e))
    }

    /// Writes a small object, replacing any.
    pub async fn put(&self, at: &Location, bytes: &[u8]) -> Result<(), StoreError> {
        self.store
            .put(
                &self.key(at),
                PutPayload::from(Bytes::copy_from_slice(bytes)),
            )
            .await
            .map(drop)
            .map_err(|e| self.error(at, &e))
    }

    /// Writes a small object only if there is none; `false` when one was there.
    pub async fn create(&self, at: &Location, bytes: &[u8]) -> Result<bool, StoreError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &self.key(at),
                PutPayload::from(Bytes::copy_from_slice(bytes)),
                options,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.error(at, &e)),
        }
    }

    /// Uploads a local file under `at`, in parts, at most a few of them in memory at once. The
    /// object appears only when every part is in; on any failure the upload is aborted.
    pub async fn upload_file(
        &self,
        at: &Location,
        path: &std::path::Path,
    ) -> Result<(), StoreError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StoreError::io(path, e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| StoreError::io(path, e))?
            .len();
        if len <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes)
                .await
                .map_err(|e| StoreError::io(path, e))?;
            return self.put(at, &bytes).await;
        }
        let upload = self
            .store
            .put_multipart(&self.key(at))
            .await
            .map_err(|e| self.error(at, &e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0; super::chunks::CHUNK];
        let sent: Result<(), StoreError> = async {
            loop {
                let read = file
                    .read(&mut buffer)
                    .await
                    .map_err(|e| StoreError::io(path, e))?;
                if read == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.error(at, &e))?;
                writer.write(&buffer[..read]);
            }
        }
        .await;
        match sent {
            Ok(()) => writer
                .finish()
                .await
                .map(drop)
                .map_err(|e| self.error(at, &e)),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    pub async fn exists(&self, at: &Location) -> Result<bool, StoreError> {
        match self.store.head(&self.key(at)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(at, &e)),
        }
    }

    /// An object's size, or `None` when there is none.
    pub async fn size(&self, at: &Location) -> Result<Option<u64>, StoreError> {
        match self.store.head(&self.key(at)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(at, &e)),
        }
    }

    /// Removes an object; one that is already gone is not an error.
    pub async fn delete(&self, at: &Location) -> Result<(), StoreError> {
        match self.store.delete(&self.key(at)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(at, &e)),
        }
    }

    /// Removes every object under a prefix.
    pub async fn delete_all(&self, at: &Location) -> Result<(), StoreError> {
        let prefix = self.key(at);
        let mut objects = self.store.list(Some(&prefix));
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| self.error(at, &e))?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(at, &e)),
            }
        }
        Ok(())
    }

    /// Names one level under a prefix, sorted (for the operations, never per request).
    pub async fn list(&self, at: &Location) -> Result<Listing, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.key(at)))
            .await
            .map_err(|e| self.error(at, &e))?;
        let name = |key: &Key| key.filename().map(str::to_owned);
        let mut listing = Listing {
            dirs: listed.common_prefixes.iter().filter_map(name).collect(),
            files: listed
                .objects
                .iter()
                .filter_map(|o| name(&o.location))
                .collect(),
        };
        listing.dirs.sort();
        listing.files.sort();
        Ok(listing)
    }

    /// Writes and removes a probe object: the bucket takes writes right now.
    pub async fn probe_writable(&self) -> Result<(), StoreError> {
        let key = Key::from(format!(
            "{}.probe-{:016x}",
            self.prefix,
            rand::random::<u64>()
        ));
        let failed = |e: object_store::Error| StoreError::Bucket {
            location: self.describe(),
            reason: reason(&e),
        };
        self.store
            .put(&key, PutPayload::from_static(b"probe"))
            .await
            .map_err(failed)?;
        self.store.delete(&key).await.map_err(failed)
    }
}

/// An object store error with its causes, in one line (they hold no credentials: requests
/// are signed in headers).
fn reason(error: &object_store::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
