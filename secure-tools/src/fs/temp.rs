//! The temporary files an atomic write goes through, and clearing the ones a crash left behind.
//!
//! On Unix a writer holds an exclusive advisory lock (`flock`) on its temporary file from just after creating it
//! until it is renamed or removed; the lock goes with the process, so a temporary file nobody holds is a
//! leftover, whatever its age, and [`remove_stale`] removes it. A sweep that locks a file in the instant between
//! its creation and its writer's lock wins it: the writer then finds it unlinked (or locked) and takes another
//! name. Elsewhere, where no lock is taken, a temporary file is a leftover once [`STALE_AFTER`] old.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(unix))]
use std::time::Duration;
use std::time::SystemTime;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, OpenOptions};

/// Temporary names start with a `.`, which no [`FileName`](super::FileName) may, so a caller can neither name,
/// read nor overwrite one.
const PREFIX: &str = ".secure-tools-";
const SUFFIX: &str = ".tmp";
const RANDOM_HEX_LEN: usize = 16;

/// Without locks (not Unix): a temporary file untouched for this long is left over from a crash, not one another
/// process is writing.
#[cfg(not(unix))]
pub(super) const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// A new temporary file in the root, held (locked, on Unix) while it lives, removed on drop unless
/// [`TempFile::renamed`] says it is gone.
pub(super) struct TempFile<'a> {
    dir: &'a Dir,
    name: String,
    file: File,
    exists: bool,
}

impl<'a> TempFile<'a> {
    /// Creates a file of a fresh temporary name, exclusively (never one that exists, never through a symlink).
    /// On Unix, `mode` is asked for and the process's umask applies, as for any new file: `0o666` for a file that
    /// keeps the mode it is created with, `0o600` for one given its final mode later (so its content is never
    /// more exposed than the file it replaces). On Unix the file is locked before it is returned (see the
    /// [module documentation](self)).
    pub(super) fn create(dir: &'a Dir, mode: u32) -> io::Result<TempFile<'a>> {
        #[cfg(not(unix))]
        let _ = mode;
        let mut options = OpenOptions::new();
        options
            .write(true)
            .create_new(true)
            .follow(FollowSymlinks::No);
        #[cfg(unix)]
        cap_std::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut attempts = 0;
        loop {
            let name = random_name();
            match dir.open_with(&name, &options) {
                Ok(file) => {
                    if held(&file)? {
                        return Ok(TempFile {
                            dir,
                            name,
                            file,
                            exists: true,
                        });
                    }
                    // A sweep took it first and removes it (or has): another name.
                    if attempts >= 8 {
                        return Err(io::Error::other(
                            "temporary files kept being swept before they could be locked",
                        ));
                    }
                    attempts += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                    attempts += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// The file now lives under another name: nothing to remove.
    pub(super) fn renamed(mut self) {
        self.exists = false;
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.exists
            && let Err(err) = self.dir.remove_file(&self.name)
        {
            tracing::warn!(temp_file = %self.name, error = %err, "could not remove a temporary file");
        }
    }
}

/// `.secure-tools-<16 hex digits>.tmp`, unique within the process (a counter) and across processes (the
/// process id, the time, and `RandomState`'s per-process random keys); `create_new` settles any collision.
fn random_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    format!("{PREFIX}{:016x}{SUFFIX}", hasher.finish())
}

/// Whether `name` has the exact shape [`random_name`] gives.
pub(super) fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|hex| {
            hex.len() == RANDOM_HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Locks a temporary file just made, and checks that a sweep did not take it first: `false` if the sweep holds it
/// or has already unlinked it.
#[cfg(unix)]
fn held(file: &File) -> io::Result<bool> {
    use cap_std::fs::MetadataExt;
    Ok(lock::try_exclusive(file)? && file.metadata()?.nlink() > 0)
}

#[cfg(not(unix))]
fn held(_file: &File) -> io::Result<bool> {
    Ok(true)
}

/// Removes the regular files of the temporary-name shape that no writer holds (see the
/// [module documentation](self)); symlinks and anything but a regular file are left alone. Best effort: a file that
/// cannot be removed is logged and left.
pub(super) fn remove_stale(dir: &Dir) -> io::Result<()> {
    for entry in dir.entries()? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_temp_name(&name) {
            continue;
        }
        // Looked at without following a link, so only a real file of that name is considered.
        let Ok(Some(metadata)) = super::regular_file(dir, &name) else {
            continue;
        };
        // Held until the file is removed, so that its writer, should it lock it only now, finds it unlinked.
        let Some(_claim) = claim(dir, &name, &metadata) else {
            continue;
        };
        {
            match dir.remove_file(&name) {
                Ok(()) => {
                    tracing::info!(temp_file = %name, "removed a temporary file left by an interrupted write")
                }
                Err(err) => {
                    tracing::warn!(temp_file = %name, error = %err, "could not remove a stale temporary file")
                }
            }
        }
    }
    Ok(())
}

/// The leftover `name`, held so that no writer can take it while it is removed; `None` if a writer holds it or it
/// cannot be opened as a regular file.
#[cfg(unix)]
fn claim(dir: &Dir, name: &str, _metadata: &cap_std::fs::Metadata) -> Option<File> {
    let file = match dir.open_with(name, super::unfollowed().read(true)) {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(temp_file = %name, error = %err, "could not open a temporary file to see if it is left over");
            return None;
        }
    };
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        return None;
    }
    match lock::try_exclusive(&file) {
        Ok(true) => Some(file),
        // A live writer's.
        Ok(false) => None,
        Err(err) => {
            tracing::warn!(temp_file = %name, error = %err, "could not lock a temporary file to see if it is left over");
            None
        }
    }
}

/// Without locks, a leftover is a file not modified for [`STALE_AFTER`].
#[cfg(not(unix))]
fn claim(_dir: &Dir, _name: &str, metadata: &cap_std::fs::Metadata) -> Option<()> {
    let modified = metadata.modified().ok()?.into_std();
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (age >= STALE_AFTER).then_some(())
}

/// The advisory lock of a temporary file: std's `File::try_lock` (`flock(2)` on Unix), through a view of the
/// cap-std file.
#[cfg(unix)]
mod lock {
    use std::io;

    use cap_std::fs::File;
    use cap_std::io_lifetimes::AsFilelike;

    /// Takes an exclusive lock on `file` without waiting: `false` if another open file holds one. Released when
    /// the file is closed.
    pub(super) fn try_exclusive(file: &File) -> io::Result<bool> {
        match file.as_filelike_view::<std::fs::File>().try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hidden_unique_and_recognised() {
        let a = random_name();
        let b = random_name();
        assert_ne!(a, b);
        assert!(a.starts_with('.'));
        assert!(is_temp_name(&a), "{a}");
        assert!(super::super::FileName::new(&a).is_err());
        for other in [
            ".secure-tools-.tmp",
            ".secure-tools-0123456789abcdeg.tmp",
            ".secure-tools-0123456789abcdef.tmp.bak",
            "secure-tools-0123456789abcdef.tmp",
            ".secure-tools-0123456789abcdef0.tmp",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    /// The race between a writer and a sweep: a sweep that locked a temporary file before its writer did wins it,
    /// and the writer, finding it locked or already unlinked, takes another name.
    #[cfg(unix)]
    #[test]
    fn a_temporary_file_a_sweep_took_first_is_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        let name = random_name();
        let mine = root.create(&name).unwrap();
        let sweep = root.open(&name).unwrap();
        assert!(lock::try_exclusive(&sweep).unwrap());
        assert!(!held(&mine).unwrap(), "locked by the sweep");
        root.remove_file(&name).unwrap();
        drop(sweep);
        assert!(!held(&mine).unwrap(), "unlinked by the sweep");
        let other = root.create(random_name()).unwrap();
        assert!(held(&other).unwrap());
        let temp = TempFile::create(&root, 0o600).unwrap();
        let sweep = root.open(temp.name()).unwrap();
        assert!(
            !lock::try_exclusive(&sweep).unwrap(),
            "a writer holds its file"
        );
    }
}
