//! Proves the private-Dovecot harness in tests/support works; doubles as usage examples.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, TcpStream as StdTcpStream};
use std::time::Instant;

use futures_util::TryStreamExt;

use support::dovecot::{Dovecot, server_name};

fn message(i: usize, body_len: usize) -> Vec<u8> {
    let body = "x".repeat(body_len);
    format!(
        "From: vendor@example.com\r\nTo: alice@localhost\r\nSubject: order {i}\r\n\
         Message-ID: <{i}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn refuses(port: u16) -> bool {
    StdTcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
}

#[tokio::test]
async fn append_count_and_increasing_uids() {
    let dc = Dovecot::start();
    assert!(dc.is_running());
    let msgs: Vec<_> = (0..3).map(|i| message(i, 100)).collect();

    let uids = dc.append("INBOX", &msgs).await;
    assert_eq!(uids.len(), 3);
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "UIDs not increasing: {uids:?}"
    );
    assert_eq!(dc.count("INBOX").await, 3);

    // Folders are created on demand; missing folders count as empty.
    assert_eq!(dc.count("Orders").await, 0);
    let more = dc.append("Orders", &msgs[..2]).await;
    assert_eq!(dc.count("Orders").await, 2);
    let flags = dc.flags("Orders").await;
    assert_eq!(flags.iter().map(|(uid, _)| *uid).collect::<Vec<_>>(), more);
    assert!(
        flags.iter().all(|(_, f)| f.is_empty()),
        "fresh messages carry no flags: {flags:?}"
    );

    // The session helper is an ordinary async-imap session.
    let mut session = dc.connect_tls().await;
    session.select("INBOX").await.expect("select");
    let _: Vec<_> = session
        .uid_store(uids[0].to_string(), "+FLAGS (\\Seen)")
        .await
        .expect("store")
        .try_collect()
        .await
        .expect("store responses");
    session.logout().await.expect("logout");
    let flags = dc.flags("INBOX").await;
    assert_eq!(flags[0], (uids[0], vec!["\\Seen".to_string()]));
}

#[tokio::test]
async fn starttls_on_plain_port_with_test_ca() {
    let dc = Dovecot::start();
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, dc.imap_port()))
        .await
        .expect("connect imap port");
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting");
    client
        .run_command_and_check_ok("STARTTLS", None)
        .await
        .expect("STARTTLS");
    let tcp = client.into_inner();
    let tls = dc
        .tls_connector()
        .connect(server_name(), tcp)
        .await
        .expect("TLS handshake after STARTTLS, trusting only the test CA");
    // No new greeting after STARTTLS: log in right away.
    let client = async_imap::Client::new(tls);
    let mut session = client
        .login(dc.user(), dc.password())
        .await
        .map_err(|(e, _)| e)
        .expect("login over STARTTLS");
    let inbox = session.select("INBOX").await.expect("select");
    assert_eq!(inbox.exists, 0);
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn stop_and_restart_keep_messages_and_ports() {
    let mut dc = Dovecot::start();
    let uids = dc.append("INBOX", &[message(1, 10), message(2, 10)]).await;
    let (imap, imaps, lmtp) = (dc.imap_port(), dc.imaps_port(), dc.lmtp_port());

    let t = Instant::now();
    dc.stop();
    println!("stop took {:?}", t.elapsed());
    assert!(!dc.is_running());
    assert!(refuses(imap) && refuses(imaps) && refuses(lmtp));
    dc.stop(); // idempotent

    let t = Instant::now();
    dc.restart();
    println!("restart took {:?}", t.elapsed());
    assert!(dc.is_running());
    assert_eq!(
        (dc.imap_port(), dc.imaps_port(), dc.lmtp_port()),
        (imap, imaps, lmtp)
    );
    assert_eq!(dc.count("INBOX").await, 2);
    let after: Vec<u32> = dc
        .flags("INBOX")
        .await
        .into_iter()
        .map(|(uid, _)| uid)
        .collect();
    assert_eq!(after, uids);
}

#[tokio::test]
async fn set_uid_validity_changes_value() {
    let dc = Dovecot::start();
    dc.append("INBOX", &[message(1, 10)]).await;
    dc.append("Orders", &[message(2, 10)]).await;

    let before = dc.uid_validity("INBOX").await;
    let wanted = before.wrapping_add(1000);
    dc.set_uid_validity("INBOX", wanted);
    assert_eq!(dc.uid_validity("INBOX").await, wanted);
    assert_eq!(dc.count("INBOX").await, 1, "messages are kept");

    dc.set_uid_validity("Orders", 4242);
    assert_eq!(dc.uid_validity("Orders").await, 4242);
}

#[tokio::test]
async fn recreate_folder_changes_uid_validity_and_keeps_messages() {
    let dc = Dovecot::start();
    let uids = dc.append("Orders", &[message(1, 10), message(2, 10)]).await;
    let mut session = dc.connect_tls().await;
    session.select("Orders").await.expect("select");
    let _: Vec<_> = session
        .uid_store(uids[1].to_string(), "+FLAGS (\\Flagged $Vendor)")
        .await
        .expect("store")
        .try_collect()
        .await
        .expect("store responses");
    session.logout().await.expect("logout");
    dc.set_uid_validity("Orders", 7); // make "changed" unambiguous despite the clock
    let before = dc.uid_validity("Orders").await;

    dc.recreate_folder("Orders").await;

    assert_ne!(dc.uid_validity("Orders").await, before);
    assert_eq!(dc.count("Orders").await, 2);
    let flags = dc.flags("Orders").await;
    assert!(flags[0].1.is_empty());
    let mut second = flags[1].1.clone();
    second.sort();
    assert_eq!(second, vec!["$Vendor".to_string(), "\\Flagged".to_string()]);
}

#[tokio::test]
async fn bulk_append_is_fast() {
    let dc = Dovecot::start();
    let msgs: Vec<_> = (0..2000).map(|i| message(i, 1000)).collect();
    let t = Instant::now();
    let uids = dc.append("Bulk", &msgs).await;
    let took = t.elapsed();
    println!("appending 2000 messages took {took:?}");
    assert_eq!(uids.len(), 2000);
    assert!(uids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(dc.count("Bulk").await, 2000);
    assert!(took.as_secs() < 20, "append of 2000 messages took {took:?}");
}

#[tokio::test]
async fn instances_are_independent_and_drop_stops_them() {
    let a = Dovecot::start();
    let b = Dovecot::start();
    assert_ne!(a.imap_port(), b.imap_port());
    assert_ne!(a.dir(), b.dir());
    a.append("INBOX", &[message(1, 10)]).await;
    assert_eq!(a.count("INBOX").await, 1);
    assert_eq!(b.count("INBOX").await, 0);
    assert!(
        a.auth_socket().exists(),
        "auth-postfix socket at {}",
        a.auth_socket().display()
    );
    assert!(!refuses(a.lmtp_port()), "LMTP listener is up");

    let (port, dir) = (b.imap_port(), b.dir().to_path_buf());
    drop(b);
    assert!(refuses(port), "dropped instance still listening");
    assert!(!dir.exists(), "temp dir removed on drop");
}
