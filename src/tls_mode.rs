//! How a connection gets TLS: shared by the IMAP (`[[mailbox]]`) and SMTP
//! (`[report]`) settings. A leaf module, so the config modules do not import
//! each other for it.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain connect, then STARTTLS before anything else is sent (port 143).
    Starttls,
    /// No TLS at all; refused unless `allow_plaintext = true`.
    None,
}
