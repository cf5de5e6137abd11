//! From fetched bytes to a committed batch: identity (hashes), parse, store.
//!
//! Sources call [`Pipeline::commit`] with what they fetched; the pipeline
//! decides what each message is and commits the batch with the source's
//! checkpoint in one transaction.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::IngestError;
use crate::config::IngestSettings;
use crate::model::{MessageBody, RawMessage};
use crate::parse::{Mail, Outcome, Registry};
use crate::store::{
    ArchivedMessage, BatchOutcome, Checkpoint, Classification, Disposition, IngestBatch, PackedRaw,
    RuleHashes, Store, StoreError,
};

pub struct Pipeline {
    store: Store,
    /// The parsers and the stamps of their rules, swapped whole on reload, so
    /// a batch in flight keeps the parsers it started with and is stamped
    /// with their hashes (what lets `reparse` skip it later).
    rules: RwLock<(Arc<Registry>, Arc<RuleHashes>)>,
    pub settings: IngestSettings,
    /// Messages fetched and committed since start; readers (tests, the delta
    /// feed) await changes instead of polling the database.
    fetched: tokio::sync::watch::Sender<u64>,
}

impl Pipeline {
    pub fn new(
        store: Store,
        registry: Registry,
        hashes: RuleHashes,
        settings: IngestSettings,
    ) -> Pipeline {
        Pipeline {
            store,
            rules: RwLock::new((Arc::new(registry), Arc::new(hashes))),
            settings,
            fetched: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A receiver that changes after every committed batch, holding the
    /// number of messages fetched since start.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.fetched.subscribe()
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.rules().0
    }

    /// The parsers with the hashes of the rules they were loaded from, as one pair.
    pub fn rules(&self) -> (Arc<Registry>, Arc<RuleHashes>) {
        match self.rules.read() {
            Ok(r) => r.clone(),
            // A panic while holding the lock cannot leave a half-written pair.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace_rules(&self, registry: Registry, hashes: RuleHashes) {
        let mut slot = match self.rules.write() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = (Arc::new(registry), Arc::new(hashes));
    }

    /// Classifies and commits one batch.
    pub async fn commit(
        &self,
        source: &str,
        folder: &str,
        checkpoint: Option<Checkpoint>,
        messages: Vec<RawMessage>,
    ) -> Result<BatchOutcome, IngestError> {
        let prepared = self.prepare(messages).await?;
        Ok(self
            .commit_prepared(source, folder, checkpoint, prepared)
            .await?)
    }

    /// Classifies a batch on the blocking pool (so a large batch does not
    /// stall other sources' IDLE loops), split across the machine's cores:
    /// on a backlog parsing is a third of the work, and one core would cap
    /// ingest below what the fetch and the commit can do. Separate from the
    /// commit so a source can parse the next batch while the previous one
    /// commits. The order of the messages is kept.
    pub async fn prepare(&self, messages: Vec<RawMessage>) -> Result<Prepared, IngestError> {
        let (registry, hashes) = self.rules();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Small batches (a message or two from IDLE) stay on one thread.
        let per_task = messages.len().div_ceil(cores).max(16);
        let mut tasks = Vec::new();
        let mut rest = messages;
        while !rest.is_empty() {
            let tail = rest.split_off(per_task.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let for_chunk = registry.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|m| prepare(&for_chunk, m))
                    .collect::<Vec<_>>()
            }));
        }
        let mut archived = Vec::new();
        for t in tasks {
            archived.extend(t.await.map_err(|e| IngestError::Parser(e.to_string()))?);
        }
        Ok(Prepared {
            registry,
            hashes,
            archived,
        })
    }

    /// Commits a prepared batch with the source's checkpoint.
    pub async fn commit_prepared(
        &self,
        source: &str,
        folder: &str,
        checkpoint: Option<Checkpoint>,
        prepared: Prepared,
    ) -> Result<BatchOutcome, StoreError> {
        let mut outcomes = self
            .commit_group(source, folder, vec![(checkpoint, prepared)])
            .await?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Commits prepared batches of one folder, in order, in one transaction
    /// (see [`Store::commit_batches`]): a source with a backlog hands over
    /// what queued up while the previous commit ran.
    pub async fn commit_group(
        &self,
        source: &str,
        folder: &str,
        group: Vec<(Option<Checkpoint>, Prepared)>,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut batches = Vec::with_capacity(group.len());
        let mut vendors: Vec<String> = Vec::new();
        let mut registry_for_health = None;
        for (checkpoint, prepared) in group {
            let Prepared {
                registry,
                hashes,
                archived,
            } = prepared;
            for m in &archived {
                debug!(
                    source, folder, location = %m.location, disposition = m.disposition.as_str(),
                    vendor = m.vendor.as_deref().unwrap_or(""), deltas = m.deltas.len(),
                    reason = m.reason.as_deref().unwrap_or(""),
                    "message classified"
                );
            }
            vendors.extend(archived.iter().filter_map(|m| m.vendor.clone()));
            registry_for_health = Some(registry);
            let batch = IngestBatch {
                source: source.to_string(),
                folder: folder.to_string(),
                checkpoint,
                messages: archived,
            };
            batches.push((batch, hashes));
        }
        vendors.sort();
        vendors.dedup();
        let refs: Vec<(&IngestBatch, &RuleHashes)> =
            batches.iter().map(|(b, h)| (b, h.as_ref())).collect();
        let outcomes = self.store.commit_batches(&refs).await?;
        if let Some(registry) = registry_for_health {
            self.check_health(&registry, &vendors).await;
        }
        for outcome in &outcomes {
            self.fetched.send_modify(|n| *n += outcome.fetched());
            if outcome.archived > 0 || outcome.duplicates > 0 {
                info!(
                    source,
                    folder,
                    archived = outcome.archived,
                    parsed = outcome.parsed,
                    quarantined = outcome.quarantined,
                    ignored = outcome.ignored,
                    skipped = outcome.skipped,
                    duplicates = outcome.duplicates,
                    deltas = outcome.deltas,
                    "batch committed"
                );
            }
        }
        Ok(outcomes)
    }
}

impl Pipeline {
    /// Format-change detection after each batch; a failure here is logged,
    /// never allowed to fail ingest (the batch is already committed).
    async fn check_health(&self, registry: &Registry, vendors: &[String]) {
        for vendor in vendors {
            let fields = registry
                .parsers()
                .iter()
                .find(|p| p.vendor() == vendor)
                .map(|p| p.declared_fields())
                .unwrap_or_default();
            match self
                .store
                .check_vendor_health(vendor, &fields, chrono::Utc::now())
                .await
            {
                Ok(alerts) => {
                    for a in alerts {
                        warn!(vendor = %a.vendor, kind = %a.kind, field = a.field.as_deref().unwrap_or(""), "{}", a.detail);
                    }
                }
                Err(e) => warn!(vendor = %vendor, error = %e, "parser health check failed"),
            }
        }
    }
}

/// A classified batch, with the parsers that classified it.
pub struct Prepared {
    registry: Arc<Registry>,
    hashes: Arc<RuleHashes>,
    archived: Vec<ArchivedMessage>,
}

impl Prepared {
    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.archived.len()
    }

    pub fn is_empty(&self) -> bool {
        self.archived.is_empty()
    }
}

/// Everything decided about one message, with no IO.
pub fn prepare(registry: &Registry, m: RawMessage) -> ArchivedMessage {
    match m.body {
        MessageBody::TooLarge { header, size } => {
            let mail = Mail::parse(&header, m.internal_date);
            let message_id = mail
                .as_ref()
                .and_then(|x| x.message_id().map(str::to_string));
            let mut key = Sha256::new();
            key.update(b"too-large\0");
            hash_normalised(&mut key, &header);
            key.update(size.to_le_bytes());
            ArchivedMessage {
                location: m.location,
                dedupe_key: key.finalize().into(),
                message_id,
                size,
                sender: mail.as_ref().and_then(Mail::from_address),
                subject: mail.as_ref().map(|x| x.subject().to_string()),
                date_header: mail.as_ref().and_then(Mail::date),
                internal_date: m.internal_date,
                disposition: Disposition::Skipped,
                reason: Some(format!(
                    "message is {size} bytes, over the configured limit; header archived, body not fetched"
                )),
                vendor: None,
                parser: None,
                parser_version: None,
                deltas: vec![],
                raw: PackedRaw::pack(header),
                raw_complete: false,
            }
        }
        MessageBody::Full(raw) => {
            let mail = Mail::parse(&raw, m.internal_date);
            let message_id = mail
                .as_ref()
                .and_then(|x| x.message_id().map(str::to_string));
            let dedupe_key = dedupe_key(&raw, message_id.as_deref());
            let c = classify(registry, mail.as_ref());
            ArchivedMessage {
                location: m.location,
                dedupe_key,
                message_id,
                size: raw.len() as u64,
                sender: mail.as_ref().and_then(Mail::from_address),
                subject: mail.as_ref().map(|x| x.subject().to_string()),
                date_header: mail.as_ref().and_then(Mail::date),
                internal_date: m.internal_date,
                disposition: c.disposition,
                reason: c.reason,
                vendor: c.vendor,
                parser: c.parser,
                parser_version: c.parser_version,
                deltas: c.deltas,
                raw: PackedRaw::pack(raw),
                raw_complete: true,
            }
        }
    }
}

/// Classifies a parsed message (`None`: mail with no header section): the
/// part of [`prepare`] that `reparse` needs again, without the identity
/// hash and the packing of the raw mail that only newly fetched mail needs.
pub fn classify(registry: &Registry, mail: Option<&Mail<'_>>) -> Classification {
    let outcome = match mail {
        Some(mail) => registry.classify(mail),
        None => Outcome::Quarantined {
            vendor: None,
            reason: "not a parseable email: no header section".into(),
        },
    };
    match outcome {
        Outcome::Parsed {
            vendor,
            parser,
            version,
            deltas,
        } => Classification {
            disposition: Disposition::Parsed,
            reason: None,
            vendor: Some(vendor),
            parser: Some(parser),
            parser_version: Some(version),
            deltas,
        },
        Outcome::Quarantined { vendor, reason } => Classification {
            disposition: Disposition::Quarantined,
            reason: Some(reason),
            vendor,
            parser: None,
            parser_version: None,
            deltas: vec![],
        },
        Outcome::Ignored { reason } => Classification {
            disposition: Disposition::Ignored,
            reason: Some(reason),
            vendor: None,
            parser: None,
            parser_version: None,
            deltas: vec![],
        },
    }
}

/// The identity that makes a message "the same message" across UIDVALIDITY
/// changes and mailboxes: its Message-ID plus its body, or, without a
/// Message-ID, the whole message. Line endings are normalised because IMAP
/// serves CRLF while Maildir files usually hold LF; headers other than the
/// Message-ID are left out because each delivery adds its own Received lines.
pub fn dedupe_key(raw: &[u8], message_id: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    match message_id.filter(|id| !id.trim().is_empty()) {
        Some(id) => {
            h.update(b"mid\0");
            h.update(id.trim().as_bytes());
            h.update(b"\0");
            hash_normalised(&mut h, body_of(raw));
        }
        None => {
            h.update(b"raw\0");
            hash_normalised(&mut h, raw);
        }
    }
    h.finalize().into()
}

fn body_of(raw: &[u8]) -> &[u8] {
    for (i, w) in raw.windows(2).enumerate() {
        if w == b"\n\n" {
            return &raw[i + 2..];
        }
        if w == b"\n\r" && raw.get(i + 2) == Some(&b'\n') {
            return &raw[i + 3..];
        }
    }
    &[]
}

/// Feeds `b` to the hasher with every CRLF as LF, without copying the
/// message. The carriage returns are found with `memchr` (a byte-by-byte
/// scan here cost about as much as the SHA-256 itself, which runs on the
/// CPU's SHA extensions).
fn hash_normalised(h: &mut Sha256, b: &[u8]) {
    let mut start = 0;
    for i in memchr::memchr_iter(b'\r', b) {
        if b.get(i + 1) == Some(&b'\n') {
            h.update(&b[start..i]);
            start = i + 1;
        }
    }
    h.update(&b[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dedupe keys are stored: the streaming hash must give exactly what
    /// hashing the message with CRLF replaced by LF gives.
    #[test]
    fn normalised_hash_equals_hashing_the_normalised_copy() {
        let mut seed = 7u64;
        for len in [0usize, 1, 2, 3, 100, 8191, 8192, 8193, 20_000] {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    [b'\r', b'\n', b'a', b'\r', b'z'][(seed >> 33) as usize % 5]
                })
                .collect();
            let mut copy = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if !(b[i] == b'\r' && b.get(i + 1) == Some(&b'\n')) {
                    copy.push(b[i]);
                }
                i += 1;
            }
            let mut h = Sha256::new();
            hash_normalised(&mut h, &b);
            let got: [u8; 32] = h.finalize().into();
            assert_eq!(got, <[u8; 32]>::from(Sha256::digest(&copy)), "len {len}");
        }
    }

    #[test]
    fn same_message_via_imap_and_maildir_has_one_identity() {
        let lf = b"Received: from a\nMessage-ID: <x@y>\nSubject: s\n\nline1\nline2\n".to_vec();
        let crlf = b"Received: from b\r\nDelivered-To: z\r\nMessage-ID: <x@y>\r\nSubject: s\r\n\r\nline1\r\nline2\r\n".to_vec();
        assert_eq!(dedupe_key(&lf, Some("x@y")), dedupe_key(&crlf, Some("x@y")));
        let other_body = b"Message-ID: <x@y>\n\nline1\nchanged\n".to_vec();
        assert_ne!(
            dedupe_key(&lf, Some("x@y")),
            dedupe_key(&other_body, Some("x@y"))
        );
        // Without a Message-ID the whole message is the identity.
        assert_ne!(dedupe_key(&lf, None), dedupe_key(&crlf, None));
    }
}
