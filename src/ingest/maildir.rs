//! A local Maildir as a mail source: the demo's default, and a way to feed
//! driftwatch from an MTA that delivers to disk.
//!
//! A Maildir has no UIDs, so progress is the set of committed locations (the
//! file's unique name, without the `:2,flags` suffix a mail client may add).
//! The Maildir is only read, never changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{IngestError, MailSource, Pipeline};
use crate::config::MaildirSettings;
use crate::model::{MessageBody, RawMessage};
use crate::store::BatchOutcome;

pub struct MaildirSource {
    settings: MaildirSettings,
    /// Locations committed so far; loaded from the store once, then kept current.
    known: Option<HashSet<String>>,
}

const FOLDER: &str = "maildir";

impl MaildirSource {
    pub fn new(settings: MaildirSettings) -> MaildirSource {
        MaildirSource {
            settings,
            known: None,
        }
    }

    fn io_err(path: &Path, source: std::io::Error) -> IngestError {
        IngestError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// New files in `new/` and `cur/`, oldest first.
    fn list(
        &self,
        known: &HashSet<String>,
    ) -> Result<Vec<(String, PathBuf, u64, SystemTime)>, IngestError> {
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.settings.path.join(sub);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && sub == "cur" => continue,
                Err(e) => return Err(Self::io_err(&dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| Self::io_err(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = name.split(':').next().unwrap_or(&name).to_string();
                if known.contains(&key) {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| Self::io_err(&entry.path(), e))?;
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((key, entry.path(), meta.len(), mtime));
            }
        }
        found.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }
}

impl MailSource for MaildirSource {
    fn source(&self) -> &str {
        &self.settings.name
    }

    fn folder(&self) -> &str {
        FOLDER
    }

    async fn sync(
        &mut self,
        pipeline: &Pipeline,
        shutdown: &CancellationToken,
    ) -> Result<BatchOutcome, IngestError> {
        let mut known = match self.known.take() {
            Some(k) => k,
            None => {
                pipeline
                    .store()
                    .known_locations(&self.settings.name, FOLDER)
                    .await?
            }
        };
        let result = async {
            let files = self.list(&known)?;
            let limits = &pipeline.settings;
            let mut total = BatchOutcome::default();
            let mut batch: Vec<RawMessage> = Vec::new();
            let mut batch_bytes = 0u64;
            let mut iter = files.into_iter().peekable();
            while let Some((key, path, len, mtime)) = iter.next() {
                let body = if len > limits.max_message_bytes {
                    MessageBody::TooLarge {
                        header: read_header(&path).map_err(|e| Self::io_err(&path, e))?,
                        size: len,
                    }
                } else {
                    match std::fs::read(&path) {
                        Ok(b) => MessageBody::Full(b),
                        // Moved by a mail client between listing and reading: next sync finds it.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Self::io_err(&path, e)),
                    }
                };
                batch_bytes += len.min(limits.max_message_bytes);
                batch.push(RawMessage {
                    location: key,
                    uid: 0,
                    body,
                    internal_date: Some(DateTime::<Utc>::from(mtime)),
                });
                let full = batch.len() >= limits.batch_max_messages
                    || batch_bytes >= limits.batch_max_bytes;
                if full || iter.peek().is_none() {
                    let keys: Vec<String> = batch.iter().map(|m| m.location.clone()).collect();
                    let o = pipeline
                        .commit(
                            &self.settings.name,
                            FOLDER,
                            None,
                            std::mem::take(&mut batch),
                        )
                        .await?;
                    known.extend(keys);
                    total.add(&o);
                    batch_bytes = 0;
                    if shutdown.is_cancelled() {
                        break;
                    }
                }
            }
            Ok(total)
        }
        .await;
        self.known = Some(known);
        result
    }

    async fn wait(&mut self, shutdown: &CancellationToken) -> Result<(), IngestError> {
        tokio::select! {
            _ = tokio::time::sleep(self.settings.poll_interval) => {}
            _ = shutdown.cancelled() => {}
        }
        Ok(())
    }

    async fn reset(&mut self) {
        // Reload from the store after an error: it is the truth after a rollback.
        self.known = None;
    }
}

/// Reads up to the end of the header section (bounded), for an oversized message.
fn read_header(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    buf.truncate(n);
    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        buf.truncate(i + 4);
    } else if let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
        buf.truncate(i + 2);
    }
    Ok(buf)
}
