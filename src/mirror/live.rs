//! Archive downloads in progress, shared by every client that asks for the archive meanwhile.
//!
//! One task per archive downloads it from upstream (or, on a replica following another's
//! download, from that replica: `cluster`) into a temp file, hashing as it writes, and
//! publishes how far it got. Each client streams from that temp file — what is already on
//! disk first, then following the download — so eight clients of a cold 100 MB archive cost
//! one upstream download and each gets bytes as soon as upstream sends them. What no client
//! gets before the digest has matched is the tail: the last `HOLDBACK` bytes are released only
//! once the SHA-256 equals the signed SHA256SUMS entry. On a mismatch every stream is cut short
//! (its `Content-Length` unmet, so no client keeps a complete unverified file) and nothing is
//! cached.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use super::MirrorError;
use crate::{
    protocol::FileKey,
    store::{
        chunks::{self, FileChunks},
        Item, Partial, Store,
    },
};

/// Bytes held back from clients until the digest has matched.
pub const HOLDBACK: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub(super) enum Phase {
    Running,
    Verified,
    Failed(Arc<MirrorError>),
}

/// What the downloading task has done so far.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// The upload being written, once it exists.
    pub partial: Option<Partial>,
    /// What upstream announced (`Content-Length`), once its answer arrived.
    pub total: Option<u64>,
    /// Bytes written to the temp file and readable from it.
    pub written: u64,
    pub phase: Phase,
}

impl Progress {
    pub fn start() -> Self {
        Self {
            partial: None,
            total: None,
            written: 0,
            phase: Phase::Running,
        }
    }
}

/// A download in progress, as its clients see it.
pub struct LiveDownload {
    store: Store,
    file: FileKey,
    progress: watch::Receiver<Progress>,
}

impl LiveDownload {
    pub(super) fn new(store: Store, file: FileKey, progress: watch::Receiver<Progress>) -> Self {
        Self {
            store,
            file,
            progress,
        }
    }

    /// Waits for the end: the archive verified and in place, or the error.
    pub async fn finished(&self) -> Result<(), MirrorError> {
        let mut rx = self.progress.clone();
        let outcome = rx
            .wait_for(|p| !matches!(p.phase, Phase::Running))
            .await
            .map(|p| p.phase.clone());
        match outcome {
            Ok(Phase::Failed(error)) => Err(Arc::unwrap_or_clone(error)),
            Ok(_) => Ok(()),
            Err(_) => Err(MirrorError::Internal(
                "the download task ended without a result".to_owned(),
            )),
        }
    }

    /// The archive as a stream that follows the download, with its length — or `None` when
    /// upstream announced no length (the client then waits for the verified file).
    pub async fn follow(
        &self,
    ) -> Result<Option<(u64, impl Stream<Item = std::io::Result<Bytes>> + use<>)>, MirrorError>
    {
        let mut rx = self.progress.clone();
        // Answer once there is a byte to send, or the download is over: an archive no larger
        // than the held-back tail, or one that fails before any byte may go out, gets a plain
        // error answer instead of a stream cut short.
        let known = rx
            .wait_for(|p| match p.phase {
                Phase::Running => p
                    .total
                    .is_some_and(|total| p.written.min(total.saturating_sub(HOLDBACK)) > 0),
                _ => true,
            })
            .await
            .map(|p| (p.total, p.phase.clone()))
            .map_err(|_| MirrorError::Internal("the download task ended".to_owned()))?;
        let total = match known {
            (_, Phase::Failed(error)) => return Err(Arc::unwrap_or_clone(error)),
            (Some(total), _) => total,
            (None, _) => return Ok(None),
        };
        let reader = Reader {
            rx,
            store: self.store.clone(),
            key: self.file.clone(),
            file: None,
            pos: 0,
            total,
        };
        Ok(Some((
            total,
            futures_util::stream::unfold(reader, |mut reader| async move {
                match reader.next_chunk().await {
                    Ok(Some(bytes)) => Some((Ok(bytes), reader)),
                    Ok(None) => None,
                    // One error ends the stream; the client sees a short body.
                    Err(e) => {
                        reader.pos = reader.total;
                        Some((Err(e), reader))
                    }
                }
            }),
        )))
    }
}

/// One client's position in a download.
struct Reader {
    rx: watch::Receiver<Progress>,
    store: Store,
    key: FileKey,
    file: Option<FileChunks>,
    pos: u64,
    total: u64,
}

impl Reader {
    async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if self.pos >= self.total {
                return Ok(None);
            }
            let progress = self.rx.borrow_and_update().clone();
            let allowed = match &progress.phase {
                Phase::Failed(error) => {
                    return Err(std::io::Error::other(format!("download aborted: {error}")))
                }
                Phase::Verified => self.total,
                Phase::Running => progress.written.min(self.total.saturating_sub(HOLDBACK)),
            };
            if self.pos < allowed {
                let want = (allowed - self.pos).min(chunks::CHUNK as u64) as usize;
                let pos = self.pos;
                let chunk = self.open(&progress).await?.read_at(pos, want).await?;
                if chunk.is_empty() {
                    return Err(std::io::Error::other("archive ended early"));
                }
                self.pos += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if self.rx.changed().await.is_err() {
                // The task is gone; its last word decides.
                if !matches!(self.rx.borrow().phase, Phase::Verified) {
                    return Err(std::io::Error::other("download ended without a result"));
                }
            }
        }
    }

    /// The upload while it is in progress (a handle keeps working once it is committed),
    /// else the verified file.
    async fn open(&mut self, progress: &Progress) -> std::io::Result<&mut FileChunks> {
        if self.file.is_none() {
            let partial = match &progress.partial {
                Some(partial) if matches!(progress.phase, Phase::Running) => Some(partial),
                _ => None,
            };
            let object = self
                .store
                .open_partial(partial, Item::File(&self.key))
                .await
                .map_err(std::io::Error::other)?;
            self.file = Some(object.into_chunks());
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no file"))
    }
}
