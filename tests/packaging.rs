//! What a user installs beside the binary: the example production config,
//! the systemd unit, the Dockerfile and the licence files. Each check says
//! on stderr when a tool it needs is not on this machine, and then checks
//! what it can without it; none passes by doing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_production_config_passes_check_config_with_secrets_from_env() {
    let text = std::fs::read_to_string(root().join("examples/production.toml")).unwrap();
    // Secrets by reference only.
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let key = line.split('=').next().unwrap_or_default().trim();
        assert!(
            !matches!(key, "password" | "token" | "secret"),
            "inline secret in the example: {line}"
        );
    }
    // As installed: /etc/driftwatch/{driftwatch.toml,parsers/}.
    let etc = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("examples/production.toml"),
        etc.path().join("driftwatch.toml"),
    )
    .unwrap();
    std::fs::create_dir(etc.path().join("parsers")).unwrap();
    for f in std::fs::read_dir(root().join("parsers")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, etc.path().join("parsers").join(f.file_name().unwrap())).unwrap();
    }
    let check = |with_secrets: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
        c.arg("-c")
            .arg(etc.path().join("driftwatch.toml"))
            .arg("check-config")
            .env("DRIFTWATCH_DATA_DIR", etc.path().join("state"))
            .env_remove("DRIFTWATCH_IMAP_PASSWORD")
            .env_remove("DRIFTWATCH_SMTP_PASSWORD");
        if with_secrets {
            c.env("DRIFTWATCH_IMAP_PASSWORD", "imap-secret")
                .env("DRIFTWATCH_SMTP_PASSWORD", "smtp-secret");
        }
        c.output().unwrap()
    };
    let out = check(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok (1 mailbox(es)"), "{stdout}");
    assert!(!stdout.contains("imap-secret"));
    // Without the variable, check-config names what is missing.
    let out = check(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DRIFTWATCH_IMAP_PASSWORD"));
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit_path = root().join("packaging/driftwatch.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for setting in [
        "DynamicUser=yes",
        "User=driftwatch",
        "StateDirectory=driftwatch",
        "StateDirectoryMode=0700",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "UMask=0077",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(setting), "unit lacks {setting:?}");
    }
    assert!(!unit.contains("User=root"));
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "NOTE: systemd-analyze is not installed (scripts/install-test-deps.sh installs it): \
             the unit's settings were checked, `systemd-analyze verify` was not run"
        );
        return;
    };
    assert!(probe.status.success());
    // verify resolves ExecStart: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit_copy = dir.path().join("driftwatch.service");
    std::fs::write(
        &unit_copy,
        unit.replace(
            "/usr/local/bin/driftwatch",
            env!("CARGO_BIN_EXE_driftwatch"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about this unit are findings; lines about the host's own units
    // (a container without systemd running) are not ours to judge.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("driftwatch.service") && !l.contains("Failed to"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify found problems:\n{stderr}"
    );
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root() {
    let file = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms = file.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not a multi-stage build");
    let user = file
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("no USER line: the container would run as root");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "runs as {user}"
    );
    assert!(file.contains("--locked"), "the build must use Cargo.lock");
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !engine {
        eprintln!(
            "NOTE: no container engine answers here (`docker info` failed): the Dockerfile's \
             structure was checked, the image was not built"
        );
        return;
    }
    let out = Command::new("docker")
        .args(["build", "-q", "-t", "driftwatch-test", "."])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "id", "driftwatch-test", "-u"])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn licence_files_match_the_cargo_licence() {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"MIT OR Apache-2.0\""));
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("MIT License") && mit.contains("the driftwatch authors"));
    let apache = std::fs::read_to_string(root().join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0"));
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("## [Unreleased]"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo install --path .") && readme.contains("Rust 1.95"));
}

/// The Dockerfile's build stage must copy everything cargo reads: the
/// manifest and lockfile, the workspace members, the patched crates,
/// `build.rs` and the folders it embeds. Without a container engine (CI
/// has none) that is checked by copying exactly the build stage's `COPY`
/// sources into an empty directory: cargo must resolve the workspace there
/// with the lockfile, and every folder `build.rs` walks must be there.
/// (The image once lacked `crates/` and `build.rs` and nothing here saw it.)
#[test]
fn the_docker_build_stage_copies_everything_cargo_reads() {
    let file = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap_or_default();
    let build_stage: Vec<&str> = file
        .lines()
        .skip_while(|l| !l.starts_with("FROM "))
        .skip(1)
        .take_while(|l| !l.starts_with("FROM "))
        .collect();
    let ctx = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for line in build_stage.iter().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert!(
            !parts.iter().any(|p| p.starts_with("--")),
            "unexpected COPY flag in the build stage: {line}"
        );
        let (dest, srcs) = parts.split_last().unwrap();
        for src in srcs {
            let to = if dest.ends_with('/') {
                ctx.path().join(dest).join(src)
            } else {
                ctx.path().join(dest)
            };
            copy_context(&root().join(src), &to, &ignored);
            copied += 1;
        }
    }
    assert!(copied > 0, "the build stage copies nothing");

    // For this machine's platform: unfiltered, cargo wants every platform's
    // crates (Android's too) in its cache, and a fresh machine that only
    // built for itself has none of them, so the check failed for that.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc).arg("-vV").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", host])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo cannot read the workspace from what the Dockerfile copies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if root().join("build.rs").exists() {
        assert!(
            ctx.path().join("build.rs").exists(),
            "build.rs is not copied"
        );
        // The folders build.rs walks: `for dir in ["parsers", "fixtures"]`.
        let build = std::fs::read_to_string(root().join("build.rs")).unwrap();
        let list = build
            .split_once("for dir in [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list)
            .expect("build.rs names the folders it embeds");
        for dir in list.split(',').map(|d| d.trim().trim_matches('"')) {
            assert!(
                ctx.path().join(dir).is_dir(),
                "build.rs embeds {dir}/, which the Dockerfile does not copy"
            );
        }
    }
}

/// Copies a file or a tree as `docker build` would send it: the names in
/// .dockerignore (one per line, `name` or `**/name`) are left out, matched
/// here against any path component, a superset of what docker leaves out.
fn copy_context(from: &Path, to: &Path, ignored: &str) {
    let skip = |p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            ignored
                .lines()
                .any(|i| i.trim().trim_start_matches("**/") == n)
        })
    };
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if !skip(&path) {
                copy_context(&path, &to.join(path.file_name().unwrap()), ignored);
            }
        }
    } else {
        assert!(from.exists(), "COPY of a missing path: {}", from.display());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}
