//! The temporary files an atomic write goes through, and clearing the ones a crash left behind.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, OpenOptions};

/// Temporary names start with a `.`, which no [`FileName`](super::FileName) may, so a caller can neither name,
/// read nor overwrite one.
const PREFIX: &str = ".secure-tools-";
const SUFFIX: &str = ".tmp";
const RANDOM_HEX_LEN: usize = 16;

/// A temporary file untouched for this long is left over from a crash, not one another process is writing.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// A new temporary file in the root, removed on drop unless [`TempFile::renamed`] says it is gone.
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
    /// more exposed than the file it replaces).
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
                    return Ok(TempFile {
                        dir,
                        name,
                        file,
                        exists: true,
                    });
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

/// Removes regular files of the temporary-name shape not modified for [`STALE_AFTER`]. Best effort: a file that
/// cannot be removed is logged and left.
pub(super) fn remove_stale(dir: &Dir) -> io::Result<()> {
    let now = SystemTime::now();
    for entry in dir.entries()? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_temp_name(&name) {
            continue;
        }
        // `symlink_metadata` does not follow a link, so only a real file of that name is considered.
        let Ok(metadata) = dir.symlink_metadata(&name) else {
            continue;
        };
        let stale = metadata
            .modified()
            .map(|modified| {
                now.duration_since(modified.into_std()).unwrap_or_default() >= STALE_AFTER
            })
            .unwrap_or(false);
        if metadata.is_file() && stale {
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
}
