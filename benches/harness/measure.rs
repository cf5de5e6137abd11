//! Timing a child process with its peak memory, and medians.

use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Measured {
    pub secs: f64,
    /// Peak resident set size of the child, in MB (GNU time's %M).
    pub peak_mb: f64,
    pub stdout: String,
}

/// Runs `program args` under `/usr/bin/time` for its peak RSS; wall time is
/// ours. Panics with the child's stderr when it fails.
pub fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Measured {
    let stats = tempfile::NamedTempFile::new().unwrap();
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(stats.path())
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run /usr/bin/time (apt-get install time)");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kb: f64 = std::fs::read_to_string(stats.path())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Measured {
        secs,
        peak_mb: kb / 1024.0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
