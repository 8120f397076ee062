//! The temporary files an atomic write goes through, and clearing the ones a crash left behind.
//!
//! On Unix a writer holds an exclusive advisory lock (`flock`) on its temporary file from just after creating it
//! until it is renamed or removed; the lock goes with the process, so a temporary file nobody holds is a
//! leftover, whatever its age, and [`remove_stale`] removes it. A sweep that locks a file in the instant between
//! its creation and its writer's lock wins it: the writer then finds it unlinked (or locked) and takes another
//! name. Where no lock can be had (not Unix; a file system that refuses locks, as NFS without a lock manager does
//! with `ENOLCK`), a writer writes unlocked, and a temporary file the sweep cannot lock is a leftover once
//! [`STALE_AFTER`] old.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, Metadata, OpenOptions};

/// Temporary names start with a `.`, which no [`FileName`](super::FileName) may, so a caller can neither name,
/// read nor overwrite one.
const PREFIX: &str = ".secure-tools-";
const SUFFIX: &str = ".tmp";
const RANDOM_HEX_LEN: usize = 16;

/// Without locks (not Unix, or a file system that refuses them): a temporary file untouched for this long is left
/// over from a crash, not one another process is writing.
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
    /// more exposed than the file it replaces). On Unix the file is locked before it is returned, if its file
    /// system allows (see the [module documentation](self)); it is removed if this fails after creating it.
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
                    // The guard first, so that the file is removed whatever happens next.
                    let mut temp = TempFile {
                        dir,
                        name,
                        file,
                        exists: true,
                    };
                    if held(&temp.file)? {
                        return Ok(temp);
                    }
                    // A sweep took it first and removes it (or has): not this guard's to remove; another name.
                    temp.exists = false;
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
            // Emptied at least (a directory whose entries cannot be removed, `chattr +a`: red-team finding), so
            // that what it held (a redacted argument, say) does not stay, nor fill the disk write after write.
            let emptied = self.file.set_len(0).is_ok();
            tracing::warn!(temp_file = %self.name, error = %err, emptied, "could not remove a temporary file");
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
/// or has already unlinked it. Where the file system gives no lock, the file is written unlocked: a sweep cannot
/// lock it either, and leaves it until it is [`STALE_AFTER`] old.
#[cfg(unix)]
fn held(file: &File) -> io::Result<bool> {
    use cap_std::fs::MetadataExt;
    let locked = match lock::try_exclusive(file) {
        Ok(locked) => locked,
        Err(err) => {
            tracing::debug!(error = %err, "could not lock a temporary file; writing it unlocked");
            true
        }
    };
    Ok(locked && file.metadata()?.nlink() > 0)
}

#[cfg(not(unix))]
fn held(_file: &File) -> io::Result<bool> {
    Ok(true)
}

/// Removes the regular files of the temporary-name shape that no writer holds, or, for those that cannot be locked,
/// that are [`STALE_AFTER`] old (see the [module documentation](self)); symlinks and anything but a regular file
/// are left alone. Best effort: a file that cannot be removed is logged and left.
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
        match dir.remove_file(&name) {
            Ok(()) => {
                tracing::info!(temp_file = %name, "removed a temporary file left by an interrupted write")
            }
            Err(err) => {
                tracing::warn!(temp_file = %name, error = %err, "could not remove a stale temporary file")
            }
        }
    }
    Ok(())
}

/// A leftover claimed for removal: on Unix, its lock when it could be taken, held until the file is removed.
struct Claim {
    _lock: Option<File>,
}

/// The claim on `name` (of `metadata`) if it is a leftover: on Unix, a file no writer holds, locked so that no
/// writer can take it while it is removed; `None` if a writer holds it or it is no longer a regular file. A file
/// that cannot be opened or locked (a file system without locks), and any file elsewhere than on Unix, is a
/// leftover once [`STALE_AFTER`] old.
fn claim(dir: &Dir, name: &str, metadata: &Metadata) -> Option<Claim> {
    #[cfg(unix)]
    match lock_if_free(dir, name) {
        Ok(Some(file)) => return Some(Claim { _lock: Some(file) }),
        // A live writer's, or no longer a regular file.
        Ok(None) => return None,
        // Already gone.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::debug!(temp_file = %name, error = %err, "could not lock a temporary file; judging it by its age");
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, name);
    let modified = metadata.modified().ok()?.into_std();
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (age >= STALE_AFTER).then_some(Claim { _lock: None })
}

/// `name` opened and locked, `None` if a writer holds it or it is not a regular file.
#[cfg(unix)]
fn lock_if_free(dir: &Dir, name: &str) -> io::Result<Option<File>> {
    let file = dir.open_with(name, super::unfollowed().read(true))?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    Ok(lock::try_exclusive(&file)?.then_some(file))
}

/// The advisory lock of a temporary file: std's `File::try_lock` (`flock(2)` on Unix), through a view of the
/// cap-std file.
#[cfg(unix)]
mod lock {
    use std::io;

    use cap_std::fs::File;
    use cap_std::io_lifetimes::AsFilelike;

    #[cfg(test)]
    thread_local! {
        /// Tests: every lock attempt on this thread fails, as on a file system that refuses locks.
        pub(super) static UNAVAILABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Takes an exclusive lock on `file` without waiting: `false` if another open file holds one. Released when
    /// the file is closed.
    pub(super) fn try_exclusive(file: &File) -> io::Result<bool> {
        #[cfg(test)]
        if UNAVAILABLE.get() {
            return Err(io::Error::from_raw_os_error(libc::ENOLCK));
        }
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

    /// Review finding: where a lock attempt failed (`ENOLCK`, on NFS without a lock manager), the temporary file
    /// just created was left behind and the write failed, every time; and the sweep, unable to lock such files,
    /// never removed them. A write now goes ahead unlocked, and the sweep judges such files by their age.
    #[cfg(unix)]
    #[test]
    fn where_locks_fail_writes_go_ahead_and_the_sweep_goes_by_age() {
        use std::collections::BTreeSet;
        lock::UNAVAILABLE.set(true);
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        let listing = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect::<BTreeSet<_>>()
        };
        let files = super::super::Root::open(dir.path(), super::super::Limits::default()).unwrap();
        let name = super::super::FileName::new("a.txt").unwrap();
        files.write_text(&name, "new").unwrap();
        assert_eq!(files.read_text(&name).unwrap().content, "new");
        assert_eq!(listing(), BTreeSet::from(["a.txt".to_owned()]));
        let temp = TempFile::create(&root, 0o600).unwrap();
        assert_eq!(listing().len(), 2);
        drop(temp);
        assert_eq!(listing(), BTreeSet::from(["a.txt".to_owned()]));

        let fresh = random_name();
        let old = random_name();
        for temp in [&fresh, &old] {
            std::fs::write(dir.path().join(temp), "x").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(&old))
            .unwrap()
            .set_modified(SystemTime::now() - STALE_AFTER - Duration::from_secs(60))
            .unwrap();
        remove_stale(&root).unwrap();
        assert_eq!(listing(), BTreeSet::from(["a.txt".to_owned(), fresh]));
        // Where locks work, a fresh file no writer holds is a leftover.
        lock::UNAVAILABLE.set(false);
        remove_stale(&root).unwrap();
        assert_eq!(listing(), BTreeSet::from(["a.txt".to_owned()]));
    }
}
