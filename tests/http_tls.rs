//! HTTPS served directly: a client trusting the test CA connects over TLS,
//! a replaced certificate is served to the next connection without a
//! restart, and a broken replacement keeps the previous one serving.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::app::Serving;
use support::dovecot::make_certs;
use support::http::http_config;

/// A client that trusts only `cas`, opens a new connection per request and
/// reports the server's certificate.
fn tls_client(cas: &[&str]) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = cas
        .iter()
        .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The certificate the server presented to a new connection.
async fn served_certificate(c: &reqwest::Client, url: &str) -> Vec<u8> {
    let res = c.get(url).send().await.expect("HTTPS request");
    assert_eq!(res.status(), 200);
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test]
async fn https_serves_a_replaced_certificate_to_the_next_connection_and_keeps_it_when_broken() {
    let (ca1, leaf1, key1) = make_certs();
    let (ca2, leaf2, key2) = make_certs();
    let (cfg, base) =
        http_config("tls_cert_file = \"tls/cert.pem\"\ntls_key_file = \"tls/key.pem\"\n");
    let tls = cfg.dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), &leaf1).unwrap();
    std::fs::write(tls.join("key.pem"), &key1).unwrap();
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    let url = format!("{}/healthz", base.replace("http://", "https://"));
    let c = tls_client(&[&ca1, &ca2]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "HTTPS never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served_certificate(&c, &url).await, der(&leaf1));
    // Plain HTTP on the same port gets no answer.
    assert!(
        support::http::client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );

    // Renewed: the next connection sees the new certificate.
    std::fs::write(tls.join("cert.pem"), &leaf2).unwrap();
    std::fs::write(tls.join("key.pem"), &key2).unwrap();
    assert_eq!(served_certificate(&c, &url).await, der(&leaf2));

    // A broken renewal (the key of another certificate) keeps the last good pair serving.
    std::fs::write(tls.join("cert.pem"), &leaf1).unwrap();
    assert_eq!(served_certificate(&c, &url).await, der(&leaf2));
    serving.stop().await;
}
