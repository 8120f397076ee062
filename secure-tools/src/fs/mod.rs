//! A confined filesystem root: text files directly inside one directory, read and written by validated name.
//!
//! A [`Root`] opens its directory once, as a handle; every later operation is made relative to that handle with
//! [`cap_std`], so a path outside the root cannot even be expressed. On top of that:
//!
//! - **Names** are [`FileName`]s: one component of ASCII letters, digits, `.`, `_` and `-`, never hidden, so
//!   `/`, `\`, `..`, NUL, percent-encoding and Unicode lookalikes are refused before the file system is touched.
//! - **Symlinks** are never followed: reading or writing a name that is a symlink is refused, wherever it points
//!   (outside, to a directory, to a hidden file inside, nowhere).
//! - **Special files** (directories, FIFOs, sockets, devices) are refused; a read, and a write replacing a file,
//!   look at the name (without following it) before opening it, so a special file is never opened, and then open
//!   without blocking and without taking a terminal as the controlling one, and check the opened file again, so
//!   one swapped in meanwhile is refused too and a FIFO cannot hang a call.
//! - **Writes are atomic**: content goes to a hidden temporary file that is synced and renamed over the target,
//!   so readers see the old file or the new one, never a mix, and a failed write leaves no trace (a crash can
//!   leave a hidden temporary file, which the next [`Root::open`] removes: a writer holds its temporary file
//!   locked, and one nobody holds is a leftover; without locks, not Unix or on a file system that refuses them,
//!   once ten minutes old).
//! - **Sizes are capped** on both sides by [`Limits`].
//!
//! A file with more than one name (a hard link placed in the root by someone with shell access, to a file
//! elsewhere) is not read ([`FsError::HardLinked`]): its name confines nothing; writing to such a name replaces
//! the name only.
//!
//! Not guaranteed: another process with direct access to the directory can change it at any time, and the
//! guarantees hold per operation, against such races, not across calls; writing a file makes the server's user its
//! owner. Only Unix (Linux) is tested; the code compiles its
//! Unix-only parts only there, but Windows semantics (sharing modes, case-insensitive names, rename over an open
//! file) are untested.
//!
//! Errors are [`FsError`]s whose messages are safe to show a caller (no paths, no OS error text), and which
//! convert into a [`ToolError`] with a stable code (outcome `error`, but `cancelled` for [`FsError::Cancelled`]).

mod args;
mod content;
mod name;
mod temp;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{
    FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt, OpenOptionsSyncExt,
};
use cap_std::fs::{Dir, File, Metadata, OpenOptions, Permissions};

use crate::call::CancellationToken;
use crate::call::Refusal as ToolError;

pub use args::{ROOT_SECTION, RootArgs};
pub use name::{FileName, FileNameError, MAX_FILE_NAME_LEN};

/// The mode a write asks for a new file; the process's umask applies, as for any program's new file (`0o644`
/// under the usual `022`, `0o600` under `077`).
const NEW_FILE_MODE: u32 = 0o666;

/// The mode of a temporary file whose final mode is set before it is renamed: the owner's only.
const PRIVATE_MODE: u32 = 0o600;

/// Limits of a [`Root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest file [`Root::read_text`] reads, in bytes.
    pub max_read_bytes: u64,
    /// The largest content [`Root::write_text`] writes, in bytes of UTF-8 after line endings are normalised.
    pub max_write_bytes: u64,
    /// The most bytes the root's files may take together once a write lands (the regular files directly in it
    /// whose names do not start with `.`: those the tools can reach), each counted in blocks of [`QUOTA_BLOCK`];
    /// a write past it is refused ([`FsError::QuotaExceeded`]). `None` (the default): no bound but the disk's.
    pub max_root_bytes: Option<u64>,
    /// The most such files the root may hold once a write lands. `None` (the default): no bound.
    pub max_root_files: Option<u64>,
}

impl Default for Limits {
    /// 1 MiB each way; no quota.
    fn default() -> Self {
        Limits {
            max_read_bytes: 1024 * 1024,
            max_write_bytes: 1024 * 1024,
            max_root_bytes: None,
            max_root_files: None,
        }
    }
}

/// What a file takes of a root's quota: its length rounded up to a whole block, an empty file one block, as most
/// file systems allocate (red-team finding: counted by length, 5,000 one-byte files passed a 10,000-byte quota and
/// took 20 MB of disk). A sparse file counts at its length.
pub const QUOTA_BLOCK: u64 = 4096;

/// How long a count of the root stands before a write counts it again (files others changed are found by then).
const QUOTA_RECOUNT: std::time::Duration = std::time::Duration::from_secs(60);

/// A write the count refuses counts again first, if the count is older than this: room made by others is found,
/// and refused writes cannot make the root be listed more often.
const QUOTA_RECOUNT_BEFORE_REFUSAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A file of `len` bytes, in what it takes of the quota.
fn quota_bytes(len: u64) -> u64 {
    len.div_ceil(QUOTA_BLOCK).max(1).saturating_mul(QUOTA_BLOCK)
}

/// What the root's files take of its quota, as last counted and kept up to date by the writes since: in all, and
/// each file (so that a file replaced gives back what was counted for it, not what it holds now: red-team finding,
/// a file others grew, then the tools overwrote, took more off the count than it had ever added).
struct Usage {
    bytes: u64,
    files: u64,
    /// Each file's share, by name.
    shares: std::collections::HashMap<std::ffi::OsString, u64>,
    counted: std::time::Instant,
}

/// What the root's files will take once a write lands, if it is within the quota.
#[derive(Clone, Copy)]
struct Room {
    bytes: u64,
    files: u64,
}

/// A directory opened once; every operation is relative to it. See the [module documentation](self).
///
/// Cheap to clone; clones share the handle.
#[derive(Clone)]
pub struct Root {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Dir,
    limits: Limits,
    /// What the root's files take, counted when a quota is set; held from a write's look at it to its rename, so
    /// that writes racing for its last bytes cannot each see room for themselves.
    quota: std::sync::Mutex<Option<Usage>>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// A file read by [`Root::read_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadText {
    /// The file's content.
    pub content: String,
    /// Its length in bytes.
    pub bytes: u64,
}

/// What [`Root::write_text`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written: the content's UTF-8 length after line endings were normalised.
    pub bytes_written: u64,
    /// Whether no file was at the name as the new one landed, so that of concurrent writes to a new name at most one
    /// is told so (on Linux, where the file system has `RENAME_NOREPLACE`; elsewhere, whether none was there as the
    /// write began).
    pub created: bool,
}

/// The message of [`FsError::Cancelled`].
const CANCELLED_MESSAGE: &str = "the write was abandoned before the file was replaced";

/// Why a read or write was refused. The message is safe to show the caller: it holds no path and no OS error
/// text; [`FsError::Io`] keeps the OS error as its source, for the operator's log.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No file of that name.
    #[error("the file does not exist")]
    NotFound,
    /// The name is a directory, FIFO, socket or device.
    #[error("the name is not a regular file")]
    NotAFile,
    /// The name is a symbolic link, which is never followed.
    #[error("the name is a symbolic link; links are not followed")]
    Symlink,
    /// The file has, or had while it was read, other names (hard links), which may lie outside the root: it is not
    /// read. A file another program is replacing (an editor's save) can have two names for a moment.
    #[error(
        "the file has, or had while it was read, other names (hard links), which may lie outside the root; it is \
         not read (a file being replaced has two for a moment: try again)"
    )]
    HardLinked,
    /// The file to read, or the content to write, is over the limit.
    #[error("the size limit of {limit} bytes is exceeded")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The write would take the root's files past its quota ([`Limits::max_root_bytes`],
    /// [`Limits::max_root_files`]).
    #[error("the data root's quota of {limit} {unit} would be exceeded")]
    QuotaExceeded {
        /// The quota.
        limit: u64,
        /// What it counts: `bytes` or `files`.
        unit: &'static str,
    },
    /// The file is not valid UTF-8.
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    /// The content holds a character that is refused; `reason` says which.
    #[error("the content cannot be written: {reason}")]
    UnsupportedContent {
        /// What was refused.
        reason: &'static str,
    },
    /// The write was abandoned before the file was replaced: its call was cancelled or timed out
    /// ([`Root::write_text_until`], [`Root::write_text_for_call`]).
    #[error("{CANCELLED_MESSAGE}")]
    Cancelled,
    /// The server's user may not read or write the file (`EACCES`, `EPERM`: its mode, an immutable or
    /// append-only file), or create a file in the root.
    #[error("the server is not permitted to read or write the file")]
    PermissionDenied,
    /// The file is a program being run (`ETXTBSY`), which may not be written; a mount point (`EBUSY`); or another
    /// process holds a lease on it (`EAGAIN`).
    #[error("the file is in use by another program")]
    FileBusy,
    /// The root is on a read-only file system (`EROFS`).
    #[error("the files are on a read-only file system")]
    ReadOnlyFilesystem,
    /// The file system, or the server user's quota on it, is full (`ENOSPC`, `EDQUOT`), or the file would pass the
    /// process's file size limit (`EFBIG`).
    #[error("there is no space left for the file")]
    NoSpace,
    /// The data root was removed while the server ran (its directory is unlinked): nothing can be read or written
    /// until the operator restores it and restarts the server. A directory made again at its path is another one.
    #[error("the server's data root was removed; the operator must restore it")]
    RootRemoved,
    /// Any other failure of the file system; the caller learns nothing more.
    #[error("the file could not be read or written")]
    Io(#[source] io::Error),
}

impl FsError {
    /// The stable code a caller can match: `not_found`, `not_a_file`, `symlink_refused`, `too_large`, `quota_exceeded`,
    /// `not_utf8`, `unsupported_content`, `cancelled`, `permission_denied`, `file_busy`, `read_only_filesystem`,
    /// `no_space`, `root_removed`, or `internal_error` for [`FsError::Io`].
    pub fn code(&self) -> &'static str {
        match self {
            FsError::NotFound => "not_found",
            FsError::NotAFile => "not_a_file",
            FsError::Symlink => "symlink_refused",
            FsError::HardLinked => "hard_linked",
            FsError::TooLarge { .. } => "too_large",
            FsError::QuotaExceeded { .. } => "quota_exceeded",
            FsError::NotUtf8 => "not_utf8",
            FsError::UnsupportedContent { .. } => "unsupported_content",
            FsError::Cancelled => crate::call::codes::CANCELLED,
            FsError::PermissionDenied => "permission_denied",
            FsError::FileBusy => "file_busy",
            FsError::ReadOnlyFilesystem => "read_only_filesystem",
            FsError::NoSpace => "no_space",
            FsError::RootRemoved => "root_removed",
            FsError::Io(_) => crate::call::codes::INTERNAL_ERROR,
        }
    }
}

impl From<io::Error> for FsError {
    /// The conditions a caller can act on, or must be told of, by their own variant (without the OS error's
    /// text); anything else is [`FsError::Io`].
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::PermissionDenied => FsError::PermissionDenied,
            // A program being run, a file mounted onto the name (a container's single-file volume), a lease
            // another process holds (Samba's oplocks, NFS delegations).
            io::ErrorKind::ExecutableFileBusy
            | io::ErrorKind::ResourceBusy
            | io::ErrorKind::WouldBlock => FsError::FileBusy,
            io::ErrorKind::ReadOnlyFilesystem => FsError::ReadOnlyFilesystem,
            // Past the process's file size limit (`ulimit -f`, `EFBIG`), as good as a full disk to the caller.
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => FsError::NoSpace,
            // A directory put at the name after it was looked at: the final rename cannot replace it (a red team's
            // race was answered `internal_error`, and logged as a failure of the server).
            io::ErrorKind::IsADirectory => FsError::NotAFile,
            _ => FsError::Io(err),
        }
    }
}

impl From<FsError> for ToolError {
    fn from(err: FsError) -> Self {
        match err {
            FsError::Io(source) => ToolError::internal(source),
            // Audited as the cancellation it is, not as a failure of the tool.
            FsError::Cancelled => {
                ToolError::cancelled(crate::call::codes::CANCELLED, CANCELLED_MESSAGE)
            }
            // The operator has to fix these, not the caller: said at WARN (no code of the server failed).
            FsError::ReadOnlyFilesystem | FsError::NoSpace | FsError::RootRemoved => {
                tracing::warn!(code = err.code(), "a file operation failed: {err}");
                ToolError::new(err.code(), err.to_string())
            }
            other => ToolError::new(other.code(), other.to_string()),
        }
    }
}

/// Why a [`Root`] could not be opened. For the operator: the message names the path.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// Nothing exists at the path.
    #[error("root directory `{}` does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path is not a directory.
    #[error("root `{}` is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The directory, or one on the way to it, may not be searched or listed by this process.
    #[error("permission denied opening root directory `{}`", path.display())]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other failure.
    #[error("could not open root directory `{}`", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl RootError {
    fn new(path: &Path, source: io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => RootError::NotFound { path, source },
            io::ErrorKind::NotADirectory => RootError::NotADirectory { path, source },
            io::ErrorKind::PermissionDenied => RootError::PermissionDenied { path, source },
            _ => RootError::Io { path, source },
        }
    }
}

impl Root {
    /// Opens the directory at `path`, following symlinks in `path` itself, once, now: later changes to what the
    /// path points at do not move the root.
    ///
    /// Also removes temporary files an interrupted write left behind (hidden regular files named
    /// `.secure-tools-<16 hex digits>.tmp`): on Unix every one that no writer holds locked, however recent, so the
    /// leftovers of a crash are gone after the restart while a write in progress in another process is not
    /// disturbed; elsewhere, and on a file system that refuses locks (NFS without a lock manager), those not
    /// modified for ten minutes. The directory must be listable for that, so a root this process may not read is
    /// refused here rather than on first use.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Root, RootError> {
        let path = path.as_ref();
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|err| RootError::new(path, err))?;
        temp::remove_stale(&dir).map_err(|err| RootError::new(path, err))?;
        Ok(Root {
            inner: Arc::new(Inner {
                dir,
                limits,
                quota: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The root's limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Reads a regular file as UTF-8. Blocking.
    ///
    /// Refuses a symlink ([`FsError::Symlink`]), anything but a regular file ([`FsError::NotAFile`]), a file with
    /// other names ([`FsError::HardLinked`]), a file over [`Limits::max_read_bytes`] ([`FsError::TooLarge`], also
    /// when it grows while being read), and bytes that are not UTF-8 ([`FsError::NotUtf8`]).
    pub fn read_text(&self, name: &FileName) -> Result<ReadText, FsError> {
        self.read_opened(name, &|| {}, &|| {})
    }

    /// How many times a read is made when the file's status changed while it was read for no reason the looks
    /// show (see [`Self::only_name`]): a change of its extended attributes, say, or a link put in and taken out.
    const READ_ATTEMPTS: usize = 2;

    /// [`read_text`](Self::read_text), with `opened` run once the file is opened and `read` once it is read, before
    /// its name is looked at again (tests race it from there).
    fn read_opened(
        &self,
        name: &FileName,
        opened: &dyn Fn(),
        read: &dyn Fn(),
    ) -> Result<ReadText, FsError> {
        let mut attempts = 1;
        loop {
            match self.read_once(name, opened, read) {
                Err(Changed::Unexplained) if attempts < Self::READ_ATTEMPTS => attempts += 1,
                Err(Changed::Unexplained) => return Err(FsError::HardLinked),
                Err(Changed::Refused(err)) => return Err(err),
                Ok(read) => return Ok(read),
            }
        }
    }

    /// One attempt of [`Self::read_opened`].
    fn read_once(
        &self,
        name: &FileName,
        opened: &dyn Fn(),
        read: &dyn Fn(),
    ) -> Result<ReadText, Changed> {
        // What the name is, without following it, before anything is opened: opening a FIFO or a device has
        // effects of its own (a writer waiting on the FIFO is let through, a device driver acts on the open).
        let looked = regular_file(&self.inner.dir, name.as_str())?
            .ok_or_else(|| Changed::from(self.not_found()))?;
        // A name confines nothing when the file has others (see below): refused from the first look.
        #[cfg(unix)]
        if cap_std::fs::MetadataExt::nlink(&looked) > 1 {
            return Err(FsError::HardLinked.into());
        }
        // Something else may have been put at the name since: the opened file is checked again below.
        let file = self
            .inner
            .dir
            .open_with(name.as_str(), unfollowed().read(true))
            .map_err(|err| Changed::from(self.refusal(name, err)))?;
        opened();
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(FsError::NotAFile.into());
        }
        // A name confines nothing when the file has others: one hard-linked in from outside the root (by whoever
        // could write its directory) is that outside file.
        #[cfg(unix)]
        if cap_std::fs::MetadataExt::nlink(&metadata) > 1 {
            return Err(FsError::HardLinked.into());
        }
        let limit = self.inner.limits.max_read_bytes;
        if metadata.len() > limit {
            return Err(FsError::TooLarge { limit }.into());
        }
        let bytes = read_capped(&file, metadata.len(), limit)?;
        read();
        // The count alone does not show a link taken out again since the open: the name is looked at once read.
        #[cfg(unix)]
        self.only_name(name, &file, &[&looked, &metadata])?;
        let content = String::from_utf8(bytes).map_err(|_| Changed::from(FsError::NotUtf8))?;
        Ok(ReadText {
            bytes: content.len() as u64,
            content,
        })
    }

    /// Checks that `name` is still the only name of `file`, opened from it and read (`metadata` its own, read
    /// after the open, with one link).
    ///
    /// The opened file's link count alone is not enough: a link put in from outside, opened, then taken out again
    /// before the count is read shows a count of one, the outside name's (a red team's race read the outside file,
    /// one read in 20). So the name is looked at again: still this file, and its only name then, the file lies in
    /// the root alone; a file with no name left was removed or replaced since it was opened (by a write of ours,
    /// say), so it had none outside either. Anything else is refused: the file has, or had, a name elsewhere.
    ///
    /// Linux drops a file's count as it unlinks a name before the name stops resolving, so a look that falls in
    /// those microseconds sees the name going away as the file's only one: a process racing links in and out as
    /// fast as it can had one read in 500 to 3,300 return the outside file. Each link and unlink also changes the
    /// file's status time (`ctime`), so the looks (`seen`: the name's before the open, the opened file's) and this
    /// one must agree on it too, unless the looks show another cause (its content, `mtime`; its mode or owner: a
    /// `chmod`): a link put in or taken out between the first look and the last shows. A change with no cause shown
    /// (setting extended attributes or the access time changes the status time alone too: a red team's loops of
    /// each) is [`Changed::Unexplained`], and the read is made again. (The access time is no cause: a read itself
    /// may set it, under `relatime` after any change of the status time, a link's included.)
    ///
    /// What is left is a race whose every step, from the first look to the last, falls within one unlink's
    /// microseconds: 0 to 77 reads in 200,000 of such a process's (five runs on a two-core VM, as root; about 380
    /// with the second look at the name alone). Such a process must be able to write the root's directory and,
    /// under Linux's default `fs.protected_hardlinks = 1`, to read and write the file it links, or own it.
    #[cfg(unix)]
    fn only_name(&self, name: &FileName, file: &File, seen: &[&Metadata]) -> Result<(), Changed> {
        use cap_std::fs::MetadataExt as _;
        let metadata = seen[seen.len() - 1];
        let named = match self.inner.dir.symlink_metadata(name.as_str()) {
            Ok(named) => Some(named),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(FsError::from(err).into()),
        };
        let explained = |earlier: &Metadata, named: &Metadata| {
            (earlier.ctime(), earlier.ctime_nsec()) == (named.ctime(), named.ctime_nsec())
                || (earlier.mtime(), earlier.mtime_nsec()) != (named.mtime(), named.mtime_nsec())
                || (earlier.mode(), earlier.uid(), earlier.gid())
                    != (named.mode(), named.uid(), named.gid())
        };
        if let Some(named) = &named
            && named.dev() == metadata.dev()
            && named.ino() == metadata.ino()
            && named.nlink() == 1
        {
            if seen.iter().all(|earlier| explained(earlier, named)) {
                return Ok(());
            }
            return Err(Changed::Unexplained);
        }
        // Read after the look at the name: a count of none now means no name outside the root then either.
        if file.metadata().map_err(FsError::from)?.nlink() == 0 {
            return Ok(());
        }
        Err(FsError::HardLinked.into())
    }

    /// Writes `content` to the file atomically, creating it or replacing it. Blocking.
    ///
    /// The content is checked first: NUL, other C0 control characters than tab, line feed and carriage return,
    /// DEL, the C1 controls (U+0080 to U+009F) and the bidirectional embeddings, overrides and isolates (U+202A to
    /// U+202E, U+2066 to U+2069) are refused ([`FsError::UnsupportedContent`]); then `\r\n` and lone `\r` become
    /// `\n`; then the result must fit [`Limits::max_write_bytes`] ([`FsError::TooLarge`]). A symlink of that name,
    /// even a dangling one, is refused ([`FsError::Symlink`]), as is anything but a regular file
    /// ([`FsError::NotAFile`]) and a file this process may not write ([`FsError::PermissionDenied`]). A replaced file keeps its permission bits (without set-id and sticky bits); a new one
    /// gets `0o666` less the process's umask on Unix, as any program's new file does.
    ///
    /// The content goes to a hidden temporary file in the root, which is synced, given its mode and renamed over
    /// the target; the directory is then synced (if that fails, the write still succeeds, the file being replaced,
    /// and a warning is logged: the rename may not survive a power loss). On any failure the temporary file is removed (emptied, where
    /// the directory lets nothing be removed) and the target is untouched. Of concurrent writes to one name, exactly one content wins, whole.
    pub fn write_text(&self, name: &FileName, content: &str) -> Result<Written, FsError> {
        self.write_text_until(name, content, &CancellationToken::new())
    }

    /// [`write_text`](Self::write_text) for a handler that may be stopped: once `stop` is cancelled (give it the
    /// call's [`CancellationToken`], which the pipeline cancels when the call is cancelled, times out or the server
    /// stops), the write is abandoned ([`FsError::Cancelled`]) at its next step, at the latest just before the file
    /// would be replaced. A write already past that last check completes, and the check and the stop can cross:
    /// a stop in the microseconds before the rename, or in the milliseconds the directory is synced after it, is
    /// recorded as a stop though the file was replaced. For a call's handler, use
    /// [`write_text_for_call`](Self::write_text_for_call), which closes that gap.
    pub fn write_text_until(
        &self,
        name: &FileName,
        content: &str,
        stop: &CancellationToken,
    ) -> Result<Written, FsError> {
        // No point of no return: the last check before the rename is the stop's only chance.
        self.write_unless(name, content, &|| stop.is_cancelled(), &|| true)
    }

    /// [`write_text_until`](Self::write_text_until) for the call `call`, exactly: given up at its steps once the
    /// call is stopped, and just before the file is replaced it passes the call's point of no return
    /// ([`CallContext::commit`](crate::CallContext::commit)): either the call was stopped first and the file is
    /// left as it was, or the replacement goes ahead and the call is recorded by what the write returns, however
    /// late a cancellation, the timeout or the server's stop comes. A call recorded `cancelled`, `timeout` or
    /// `shutting_down` has changed nothing.
    pub fn write_text_for_call(
        &self,
        name: &FileName,
        content: &str,
        call: &crate::CallContext,
    ) -> Result<Written, FsError> {
        let stop = call.cancellation();
        // Once the call is committed (by this write, or an earlier one of the same call) it runs to its end.
        self.write_unless(
            name,
            content,
            &|| !call.is_committed() && stop.is_cancelled(),
            &|| call.commit(),
        )
    }

    /// The write, given up with [`FsError::Cancelled`] when `stopped` says so at one of its steps, or when
    /// `commit` refuses just before the rename.
    fn write_unless(
        &self,
        name: &FileName,
        content: &str,
        stopped: &dyn Fn() -> bool,
        commit: &dyn Fn() -> bool,
    ) -> Result<Written, FsError> {
        let stopped = || {
            if stopped() {
                Err(FsError::Cancelled)
            } else {
                Ok(())
            }
        };
        stopped()?;
        content::check(content).map_err(|reason| FsError::UnsupportedContent { reason })?;
        let content = content::normalize_line_endings(content);
        let limit = self.inner.limits.max_write_bytes;
        if content.len() as u64 > limit {
            return Err(FsError::TooLarge { limit });
        }
        let existing = self.existing_target(name)?;
        let permissions = permissions_for(existing.as_ref());
        // Refused before anything is written when the count already says so (red-team finding: a refused write
        // wrote and synced its whole content first); looked at again, under the lock, before the rename.
        let quota = self.has_quota().then(|| self.quota_lock());
        if let Some(mut usage) = quota {
            self.room_for(&mut usage, name, content.len() as u64)?;
        }

        let dir = &self.inner.dir;
        // Private until it has the mode of the file it replaces; a new file keeps the mode it is created with,
        // the umask applied by the kernel.
        let mode = if permissions.is_some() {
            PRIVATE_MODE
        } else {
            NEW_FILE_MODE
        };
        let temp = temp::TempFile::create(dir, mode).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                self.not_found()
            } else {
                FsError::from(err)
            }
        })?;
        temp.file().write_all(content.as_bytes())?;
        if let Some(permissions) = permissions {
            temp.file().set_permissions(permissions)?;
        }
        temp.file().sync_all()?;
        // With a quota, what the root holds is looked at and the file replaced under one lock.
        let mut quota = self.has_quota().then(|| self.quota_lock());
        let after = match &mut quota {
            Some(usage) => Some(self.room_for(usage, name, content.len() as u64)?),
            None => None,
        };
        // The last moment to give up: the temporary file is removed as it is dropped.
        stopped()?;
        if !commit() {
            return Err(FsError::Cancelled);
        }
        // `rename` replaces a symlink put at the name since the check rather than following it: a race can only
        // replace the link, never write through it.
        let created = rename_telling_created(dir, temp.name(), name.as_str(), existing.is_none())?;
        temp.renamed();
        if let (Some(usage), Some(room)) = (&mut quota, after)
            && let Some(usage) = usage.as_mut()
        {
            usage.bytes = room.bytes;
            usage.files = room.files;
            usage
                .shares
                .insert(name.as_str().into(), quota_bytes(content.len() as u64));
        }
        drop(quota);
        report_unsynced_dir(sync_dir(dir));
        Ok(Written {
            bytes_written: content.len() as u64,
            created,
        })
    }

    fn has_quota(&self) -> bool {
        let limits = &self.inner.limits;
        limits.max_root_bytes.is_some() || limits.max_root_files.is_some()
    }

    fn quota_lock(&self) -> std::sync::MutexGuard<'_, Option<Usage>> {
        self.inner
            .quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the root's files take once `name` is written with `bytes`, if that is within the quota: from the count
    /// held (made now if there is none, or it is older than [`QUOTA_RECOUNT`]), counted again before a refusal if
    /// it is older than [`QUOTA_RECOUNT_BEFORE_REFUSAL`]. The file at `name` gives back what the count holds for it.
    fn room_for(
        &self,
        usage: &mut Option<Usage>,
        name: &FileName,
        bytes: u64,
    ) -> Result<Room, FsError> {
        let fresh =
            |usage: &Option<Usage>, age| usage.as_ref().is_some_and(|u| u.counted.elapsed() < age);
        if !fresh(usage, QUOTA_RECOUNT) {
            *usage = Some(self.count_root()?);
        }
        // What the name holds now, with one name only: a file the count may know (red-team finding: one renamed
        // outside, then written again, gave back a share whose bytes were still on disk under another name).
        let now = match self.inner.dir.symlink_metadata(name.as_str()) {
            Ok(metadata) if metadata.is_file() => {
                let sole = cap_std::fs::MetadataExt::nlink(&metadata) <= 1;
                Some(if sole { quota_bytes(metadata.len()) } else { 0 })
            }
            _ => None,
        };
        let after = |usage: &Usage| {
            let share = usage
                .shares
                .get(std::ffi::OsStr::new(name.as_str()))
                .copied();
            // The smaller of its share and what it holds now (a file grown outside gives back no more than was
            // counted for it); nothing, for a name that holds nothing, or a file the count does not know.
            let given_back = share.zip(now).map_or(0, |(share, now)| share.min(now));
            Room {
                bytes: usage
                    .bytes
                    .saturating_sub(given_back)
                    .saturating_add(quota_bytes(bytes)),
                files: usage.files + u64::from(share.is_none() || now.is_none()),
            }
        };
        let mut room = usage.as_ref().map(after);
        if room.is_some_and(|room| self.over_quota(room).is_some())
            && !fresh(usage, QUOTA_RECOUNT_BEFORE_REFUSAL)
        {
            let counted = self.count_root()?;
            room = Some(after(&counted));
            *usage = Some(counted);
        }
        let room = room.unwrap_or(Room { bytes: 0, files: 0 });
        match self.over_quota(room) {
            Some(refusal) => Err(refusal),
            None => Ok(room),
        }
    }

    /// The quota `room` is past, if any.
    fn over_quota(&self, room: Room) -> Option<FsError> {
        let limits = &self.inner.limits;
        if let Some(limit) = limits.max_root_bytes
            && room.bytes > limit
        {
            return Some(FsError::QuotaExceeded {
                limit,
                unit: "bytes",
            });
        }
        if let Some(limit) = limits.max_root_files
            && room.files > limit
        {
            return Some(FsError::QuotaExceeded {
                limit,
                unit: "files",
            });
        }
        None
    }

    /// What the root's files take now: one pass over the directory.
    fn count_root(&self) -> Result<Usage, FsError> {
        let mut usage = Usage {
            bytes: 0,
            files: 0,
            shares: std::collections::HashMap::new(),
            counted: std::time::Instant::now(),
        };
        for entry in self.inner.dir.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            // Hidden names are no file of the tools' (a write's temporary file among them); any other counts,
            // one that is no UTF-8 included.
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            // Not followed: a link is no file of the root's.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_file() {
                let takes = quota_bytes(metadata.len());
                usage.bytes = usage.bytes.saturating_add(takes);
                usage.files += 1;
                usage.shares.insert(name, takes);
            }
        }
        Ok(usage)
    }

    /// The metadata of the regular file a write would replace, `None` if there is none, or why it may not be
    /// replaced.
    fn existing_target(&self, name: &FileName) -> Result<Option<Metadata>, FsError> {
        let dir = &self.inner.dir;
        // As for a read: what the name is before it is opened, and the opened file checked again.
        if regular_file(dir, name.as_str())?.is_none() {
            return Ok(None);
        }
        // Opening for writing (without truncating) asks the OS whether this process may write the file, so a
        // read-only file is not replaced behind its owner's back; the mode is then taken from that very file.
        match dir.open_with(name.as_str(), unfollowed().write(true)) {
            Ok(file) => {
                let metadata = file.metadata()?;
                if metadata.is_file() {
                    Ok(Some(metadata))
                } else {
                    Err(FsError::NotAFile)
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.refusal(name, err)),
        }
    }

    /// Nothing found where something was looked for: the file is not there ([`FsError::NotFound`]), or the root
    /// itself was removed ([`FsError::RootRemoved`]; a trial's removed root was refused `internal_error` on a
    /// write, logged as a failure of the server's code, and `not_found` on a read). Looked at only on this path.
    fn not_found(&self) -> FsError {
        let removed = self
            .inner
            .dir
            .dir_metadata()
            .is_ok_and(|metadata| cap_std::fs::MetadataExt::nlink(&metadata) == 0);
        if removed {
            FsError::RootRemoved
        } else {
            FsError::NotFound
        }
    }

    /// Explains a failed open: what the name is, if that is why, or else the OS error.
    fn refusal(&self, name: &FileName, err: io::Error) -> FsError {
        if err.kind() == io::ErrorKind::NotFound {
            return self.not_found();
        }
        // `O_NOFOLLOW` on a symlink fails with `ELOOP`, and opening a socket with `ENXIO`: a name of one component
        // has no other loop, and the open says what the entry was when it was opened, which a look now may not (a
        // red team swapped a symlink for a file between the two, and was answered `internal_error`).
        #[cfg(unix)]
        match err.raw_os_error() {
            Some(libc::ELOOP) => return FsError::Symlink,
            Some(libc::ENXIO) => return FsError::NotAFile,
            _ => {}
        }
        // Elsewhere, look at the entry itself rather than decode the error.
        match regular_file(&self.inner.dir, name.as_str()) {
            Err(refused @ (FsError::Symlink | FsError::NotAFile)) => refused,
            _ => FsError::from(err),
        }
    }
}

/// Why one attempt of a read failed.
enum Changed {
    /// The file's status changed while it was read, for no reason the looks show: read again. (Unix only: the
    /// looks are.)
    #[cfg_attr(not(unix), allow(dead_code))]
    Unexplained,
    /// Refused.
    Refused(FsError),
}

impl From<FsError> for Changed {
    fn from(err: FsError) -> Self {
        Changed::Refused(err)
    }
}

impl From<io::Error> for Changed {
    fn from(err: io::Error) -> Self {
        Changed::Refused(err.into())
    }
}

/// What `name` is in `dir`, looked at without following it: the metadata of a regular file, `None` if nothing has
/// that name, or why it may not be read or replaced ([`FsError::Symlink`], [`FsError::NotAFile`], the OS error).
fn regular_file(dir: &Dir, name: &str) -> Result<Option<Metadata>, FsError> {
    match dir.symlink_metadata(name) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(FsError::from(err)),
        Ok(metadata) if metadata.is_symlink() => Err(FsError::Symlink),
        Ok(metadata) if !metadata.is_file() => Err(FsError::NotAFile),
        Ok(metadata) => Ok(Some(metadata)),
    }
}

/// The options to open a name that may have changed since it was looked at, to which the caller adds read or
/// write: a symlink is not followed (`O_NOFOLLOW`), a FIFO cannot block the open (`O_NONBLOCK`), and a terminal
/// never becomes the server's controlling terminal (`O_NOCTTY`, which std and cap-std do not name). The caller
/// checks that the opened file is a regular file.
fn unfollowed() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.follow(FollowSymlinks::No).nonblock(true);
    #[cfg(unix)]
    cap_std::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOCTTY);
    options
}

/// Reads at most `limit` bytes, refusing a source that has more: one byte past the limit tells a file that grew
/// since its size was checked from one exactly at the limit.
///
/// Memory is asked for without aborting on its refusal (a red team's: with the limit set far above the memory, a
/// 40 GB file aborted the server): a read the memory cannot hold is refused, for the operator to lower the limit.
fn read_capped(source: impl Read, expected_len: u64, limit: u64) -> Result<Vec<u8>, FsError> {
    let out_of_memory = |_| {
        FsError::Io(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "the file is larger than the memory can hold: lower the read limit",
        ))
    };
    let capacity = usize::try_from(expected_len.min(limit)).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(capacity).map_err(out_of_memory)?;
    bytes.resize(capacity, 0);
    let mut source = source.take(limit.saturating_add(1));
    // Into the space reserved for the size the file had; then, for a file that grew since, a chunk at a time.
    let mut filled = 0;
    while filled < bytes.len() {
        match read_retrying(&mut source, &mut bytes[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    bytes.truncate(filled);
    if filled == capacity {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let read = read_retrying(&mut source, &mut chunk)?;
            if read == 0 {
                break;
            }
            bytes.try_reserve(read).map_err(out_of_memory)?;
            bytes.extend_from_slice(&chunk[..read]);
        }
    }
    if bytes.len() as u64 > limit {
        return Err(FsError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The piece a file that grew while it was read is read in past the size it had.
const READ_CHUNK: usize = 8 * 1024;

/// One `read`, again when a signal interrupted it.
fn read_retrying(source: &mut impl Read, into: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(into) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The permissions to give the new content: those of the file it replaces; `None` for a new file, which keeps
/// the mode it was created with.
#[cfg(unix)]
fn permissions_for(existing: Option<&Metadata>) -> Option<Permissions> {
    use cap_std::fs::PermissionsExt;
    // Set-id and sticky bits are dropped: the replacement is a new file, owned by this process's user.
    existing.map(|metadata| Permissions::from_mode(metadata.permissions().mode() & 0o777))
}

#[cfg(not(unix))]
fn permissions_for(existing: Option<&Metadata>) -> Option<Permissions> {
    existing.map(Metadata::permissions)
}

/// Renames `from` to `to` in `dir`, replacing a file there, and says whether none was (`created`).
///
/// Looked at before the write, the name said so for every writer of a race: a red team's 20 concurrent writes to a
/// new name were each told `created`, 19 of them having replaced another's file. On Linux the rename is first tried
/// without replacing (`RENAME_NOREPLACE`), so at most one writer of a race is told it created the file (none, if the
/// file is removed between its refusal and the plain rename that follows). Where that rename fails for any other
/// reason (a file system without it says `EINVAL`; a seccomp sandbox may say `EPERM` or `ENOSYS`), the plain rename
/// is made, which reports a real failure itself, and `none_before`, the look before, says.
fn rename_telling_created(dir: &Dir, from: &str, to: &str, none_before: bool) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{RenameFlags, renameat_with};
        match renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::EXIST) => {
                dir.rename(from, dir, to)?;
                return Ok(false);
            }
            Err(_) => {}
        }
    }
    dir.rename(from, dir, to)?;
    Ok(none_before)
}

/// Logs a failed [`sync_dir`] after a rename, at WARN: the file was replaced, so the write succeeds, but the
/// rename may not survive a power loss, which the operator should know.
fn report_unsynced_dir(synced: io::Result<()>) {
    if let Err(err) = synced {
        tracing::warn!(
            error = %err,
            "could not sync the root directory after a write; the write succeeded but may not survive a power loss"
        );
    }
}

/// Makes the rename durable. Best effort: not every platform can sync a directory.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true).maybe_dir(true);
    let this: File = dir.open_with(".", &options)?;
    this.sync_all()
}

#[cfg(all(test, unix))]
mod tests;
