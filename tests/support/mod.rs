//! Shared helpers for integration tests. Use from a test file with `mod support;`.
#![allow(dead_code)] // not every test binary uses every helper
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: panicking with a message is the error handling

pub mod app;
pub mod bin;
pub mod db;
pub mod dovecot;
pub mod http;
pub mod postfix;
pub mod proxy;
pub mod sftp;
pub mod vendor_http;
pub mod vendor_mail;

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Inherently racy (someone else may take it before our server binds it), so
/// servers started on it must retry with a new port when binding fails.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports. All listeners are held at once so the kernel cannot
/// hand out the same port twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("local_addr of a bound listener")
            .port()
    })
}
