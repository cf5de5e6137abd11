//! Files and directories only the service's user can read.
//!
//! The database holds raw vendor mail (borrowers' names, addresses) and the
//! reports summarise it, so everything driftwatch creates is private whatever
//! the umask: directories 0700, files 0600. Modes are set at creation (no
//! window where a file is readable) and tightened on files driftwatch owns
//! that an older version left wider. Directories that already existed are
//! only warned about: they may be shared on purpose (`/tmp`, a home dir).

use std::collections::HashSet;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::warn;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700. An existing
/// directory is left as it is, with a warning (once) if group or others can
/// read it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        warn_if_open(dir, "directory holding driftwatch data");
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Writes `bytes` to `path` with mode 0600 (also when the file existed with
/// a wider mode), through a temp file and a rename so a reader never sees
/// half of it.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    // A leftover temp file keeps its old mode through `mode()`: set it.
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Makes sure the SQLite database at `path` and its `-wal`/`-shm` files are
/// 0600 before SQLite opens them: SQLite creates `-wal` and `-shm` with the
/// database file's mode, so a private database file keeps them private too.
/// Existing files (from an older version) are tightened, with a warning.
pub fn prepare_database(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    // Created empty (SQLite takes an empty file as a new database); an
    // existing one is not opened for writing here, so a user with read
    // access only can still read it.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = Path::new(&p);
        if let Err(e) = tighten(p) {
            warn!(path = %p.display(), error = %e, "cannot make the file private (0600); others may read it");
        }
    }
    Ok(())
}

/// Sets an existing file driftwatch owns to 0600 if it is wider; missing is fine.
fn tighten(path: &Path) -> io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))?;
        warn!(path = %path.display(), old_mode = %format!("{mode:o}"),
            "tightened file permissions to 0600: it holds vendor mail");
    }
    Ok(())
}

/// True (after warning once per path) when group or others may read `path`.
/// Used for secret files (`password_file`, token files) and data directories.
pub fn warn_if_open(path: &Path, what: &str) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mode = meta.permissions().mode() & 0o7777;
    // A sticky shared directory (/tmp) is shared on purpose; files in it are still 0600.
    if mode & 0o077 == 0 || (meta.is_dir() && mode & 0o1000 != 0) {
        return false;
    }
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let first = WARNED
        .lock()
        .map(|mut w| {
            w.get_or_insert_with(HashSet::new)
                .insert(path.to_path_buf())
        })
        .unwrap_or(true);
    if first {
        warn!(path = %path.display(), mode = %format!("{mode:o}"),
            "{what} is readable by group or others; `chmod {}` it", if meta.is_dir() { "700" } else { "600" });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_dirs_are_private_and_wider_files_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!((mode(&tmp.path().join("a")), mode(&dir)), (0o700, 0o700));

        let f = dir.join("report.html");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        write(&f, b"new").unwrap();
        assert_eq!(
            (mode(&f), std::fs::read(&f).unwrap()),
            (0o600, b"new".to_vec())
        );

        let db = dir.join("x.db");
        std::fs::write(dir.join("x.db-wal"), "").unwrap();
        std::fs::set_permissions(dir.join("x.db-wal"), Permissions::from_mode(0o644)).unwrap();
        prepare_database(&db).unwrap();
        assert_eq!((mode(&db), mode(&dir.join("x.db-wal"))), (0o600, 0o600));
    }

    #[test]
    fn open_secret_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pw");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o640)).unwrap();
        assert!(warn_if_open(&f, "secret file"));
        std::fs::set_permissions(&f, Permissions::from_mode(0o600)).unwrap();
        assert!(!warn_if_open(&f, "secret file"));
    }
}
