//! A TCP proxy between driftwatch and Dovecot that breaks the network on command.
//!
//! It forwards bytes blindly (TLS passes through untouched: the server
//! certificate names 127.0.0.1, so a client pointed at the proxy still verifies
//! it), and the test decides when to hurt the connections:
//! - [`FaultProxy::cut_all`] closes every live connection (FIN) or resets it
//!   (RST, via `SO_LINGER 0`);
//! - [`FaultProxy::arm_cuts`] queues cuts that fire after N more bytes flow
//!   server → client, i.e. in the middle of a FETCH literal;
//! - [`FaultProxy::stall_all`] stops forwarding on live connections for a
//!   while, like a half-open TCP connection or a hung server;
//! - [`FaultProxy::wait_quiet`] waits until nothing has flowed for a moment
//!   (after a full sync that means the client sits in IDLE).
//!
//! New connections are never affected by commands issued before they opened,
//! so a client that reconnects after a fault gets a healthy path.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How a connection is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Orderly close: the peer reads EOF.
    Close,
    /// Abortive close (`SO_LINGER 0`): the peer gets ECONNRESET.
    Reset,
}

#[derive(Debug, Clone, Copy)]
enum Command {
    Kill(Kill),
    Stall(Duration),
}

struct Shared {
    upstream: SocketAddr,
    commands: broadcast::Sender<Command>,
    /// Cuts waiting to fire: (server → client bytes still to pass, how).
    armed: Mutex<VecDeque<(u64, Kill)>>,
    accepted: AtomicU64,
    fired: AtomicU64,
    bytes_down: AtomicU64,
    /// Milliseconds to hold each server → client chunk (a slow link).
    down_delay_ms: AtomicU64,
    last_activity: Mutex<Instant>,
    stop: CancellationToken,
}

/// A running proxy on 127.0.0.1. Dropping it stops it and its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Binds 127.0.0.1:0 and forwards every connection to `upstream_port`.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind proxy listener");
        let addr = listener.local_addr().expect("proxy local addr");
        let (commands, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            commands,
            armed: Mutex::new(VecDeque::new()),
            accepted: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            down_delay_ms: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            stop: CancellationToken::new(),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = s.stop.cancelled() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                // Subscribe now: only commands issued from here on reach it.
                let commands = s.commands.subscribe();
                tokio::spawn(forward(client, s.clone(), commands));
            }
        });
        FaultProxy { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Faults that fired so far (armed cuts, plus one per `cut_all` per connection).
    pub fn fired(&self) -> u64 {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server → client so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    /// Holds each server → client chunk (up to 64 KiB) for `d`: a slow link,
    /// so a test can act while a long download is under way.
    pub fn slow_down(&self, d: Duration) {
        self.shared
            .down_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Breaks every live connection now.
    pub fn cut_all(&self, how: Kill) {
        let _ = self.shared.commands.send(Command::Kill(how));
    }

    /// Stops forwarding on every live connection for `d` (a later cut still applies).
    pub fn stall_all(&self, d: Duration) {
        let _ = self.shared.commands.send(Command::Stall(d));
    }

    /// Queues cuts: the first fires after `bytes` more bytes flow server →
    /// client on any connection, the next counts from there, and so on.
    pub fn arm_cuts(&self, cuts: &[(u64, Kill)]) {
        self.shared
            .armed
            .lock()
            .unwrap()
            .extend(cuts.iter().copied());
    }

    /// Cuts still waiting to fire.
    pub fn armed(&self) -> usize {
        self.shared.armed.lock().unwrap().len()
    }

    /// Returns once no byte has flowed either way for `quiet` (bounded by `limit`).
    pub async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let last = *self.shared.last_activity.lock().unwrap();
            if last.elapsed() >= quiet {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "traffic never went quiet for {quiet:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// How many of `n` server → client bytes may pass before an armed cut fires,
/// and whether it fires.
fn take_budget(shared: &Shared, n: usize) -> (usize, Option<Kill>) {
    let mut armed = shared.armed.lock().unwrap();
    let Some((left, how)) = armed.front_mut() else {
        return (n, None);
    };
    if (n as u64) < *left {
        *left -= n as u64;
        return (n, None);
    }
    let pass = *left as usize;
    let how = *how;
    armed.pop_front();
    (pass, Some(how))
}

fn break_connection(client: TcpStream, server: TcpStream, how: Kill, shared: &Shared) {
    shared.fired.fetch_add(1, Ordering::SeqCst);
    if how == Kill::Reset {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    drop(client);
    drop(server);
}

async fn forward(
    mut client: TcpStream,
    shared: Arc<Shared>,
    mut commands: broadcast::Receiver<Command>,
) {
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    let touch = || *shared.last_activity.lock().unwrap() = Instant::now();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            r = client.read(&mut up) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                touch();
                if server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            r = server.read(&mut down) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                touch();
                let delay = shared.down_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let (pass, fire) = take_budget(&shared, n);
                if client.write_all(&down[..pass]).await.is_err() {
                    return;
                }
                shared.bytes_down.fetch_add(pass as u64, Ordering::SeqCst);
                if let Some(how) = fire {
                    break_connection(client, server, how, &shared);
                    return;
                }
            }
            c = commands.recv() => match c {
                Ok(Command::Kill(how)) => {
                    break_connection(client, server, how, &shared);
                    return;
                }
                Ok(Command::Stall(d)) => {
                    // Forward nothing until the stall ends; a kill still applies.
                    let until = tokio::time::sleep(d);
                    tokio::pin!(until);
                    loop {
                        tokio::select! {
                            _ = &mut until => break,
                            _ = shared.stop.cancelled() => return,
                            c = commands.recv() => match c {
                                Ok(Command::Kill(how)) => {
                                    break_connection(client, server, how, &shared);
                                    return;
                                }
                                Ok(Command::Stall(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
