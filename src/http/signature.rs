//! Standard Webhooks signatures, the one implementation both sides use:
//! intake verifies vendors' webhooks with it, outbound alerts are signed
//! with it. HMAC-SHA256 over `id.timestamp.body`, sent as
//! `webhook-signature: v1,<base64>`; secrets are `whsec_<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// Why a configured secret cannot be used (the value itself is never shown).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("does not start with `whsec_`")]
    Prefix,
    #[error("is not base64 after `whsec_`")]
    Base64,
    #[error("is empty after `whsec_`")]
    Empty,
}

/// The key bytes of a `whsec_<base64>` secret.
pub fn decode_secret(value: &str) -> Result<Vec<u8>, SecretError> {
    let b = value
        .trim()
        .strip_prefix("whsec_")
        .ok_or(SecretError::Prefix)?;
    let key = B64.decode(b).map_err(|_| SecretError::Base64)?;
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}

/// HMAC-SHA256 (RFC 2104) with sha2, which the crate already uses.
pub fn hmac_sha256(key: &[u8], msg: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for m in msg {
        inner.update(m);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The Standard Webhooks signature header value for a body: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(
        key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", B64.encode(mac))
}

/// Whether any of the space-separated signatures (several are allowed,
/// for key rotation) is the body's, compared in constant time.
pub fn signature_matches(key: &[u8], id: &str, timestamp: i64, body: &[u8], sigs: &str) -> bool {
    let expected = sign(key, id, timestamp, body);
    sigs.split(' ').fold(false, |acc, s| {
        acc | (s.len() == expected.len()
            && s.bytes()
                .zip(expected.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks spec's reference test vector.
        let key = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_without_its_prefix_or_not_base64_is_refused() {
        assert!(matches!(
            decode_secret("c2VjcmV0"),
            Err(SecretError::Prefix)
        ));
        assert!(matches!(
            decode_secret("whsec_!!"),
            Err(SecretError::Base64)
        ));
        assert_eq!(decode_secret("whsec_c2VjcmV0\n").unwrap(), b"secret");
    }
}
