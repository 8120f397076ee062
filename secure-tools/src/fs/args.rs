//! The root's settings as a binary reads them, the same way as the server's own (see
//! [`ServerArgs`](crate::serve::ServerArgs)): flags, then variables, then the `[files]` table of the config file.

use std::path::{Path, PathBuf};

use super::{Limits, Root};
use crate::serve::settings::settings_args;
use crate::serve::{Settings, SettingsError};

settings_args! {
    /// Where the confined root is and how much it reads and writes. In the config file, the `[files]` table
    /// (`data-root = "/srv/data"`).
    pub struct RootArgs {
        /// The directory the tools may read and write (files directly inside it, no subdirectories).
        #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
        data_root: PathBuf = env "DATA_ROOT",
        /// The largest file read, in bytes. Default: 1 MiB.
        #[cfg_attr(feature = "cli", arg(long, value_name = "BYTES"))]
        max_read_bytes: u64 = env "MAX_READ_BYTES",
        /// The largest content written, in bytes of UTF-8 after line endings are normalised. Default: 1 MiB.
        #[cfg_attr(feature = "cli", arg(long, value_name = "BYTES"))]
        max_write_bytes: u64 = env "MAX_WRITE_BYTES",
        /// The most bytes the root's files may hold together; a write past it is refused `quota_exceeded`.
        /// Default: no bound but the disk's.
        #[cfg_attr(feature = "cli", arg(long, value_name = "BYTES"))]
        max_root_bytes: u64 = env "MAX_ROOT_BYTES",
        /// The most files the root may hold; a write of one more is refused `quota_exceeded`. Default: no bound.
        #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
        max_root_files: u64 = env "MAX_ROOT_FILES",
    }
}

/// The config file's table for the root.
pub const ROOT_SECTION: &str = "files";

impl RootArgs {
    /// Opens the root these settings describe, over the config file's `[files]` table. Refuses a root that would
    /// hold any file the settings name that no tool should reach (the audit log, a key, a certificate, the config
    /// file, the lockfile: [`Settings::protected_files`]): the tools could read or overwrite it.
    pub fn open(self, settings: &Settings) -> Result<Root, SettingsError> {
        // A misspelt variable of the root's own would leave its default (no quota) without a word.
        crate::serve::settings::warn_misspelled_among(
            std::env::vars_os().map(|(name, _)| name),
            Self::VARIABLES,
        );
        #[cfg(feature = "cli")]
        let args = self.blank_variables_unset();
        #[cfg(not(feature = "cli"))]
        let args = self;
        let args = args.or(settings.section(ROOT_SECTION)?);
        let invalid = |message: String| {
            SettingsError::Invalid(crate::serve::InvalidSetting::new(DATA_ROOT, message))
        };
        let data_root = args.data_root.ok_or_else(|| {
            // A misspelled table (`[file]`) would hold it: say so, rather than only that it is missing.
            let unread = settings.unread_sections();
            let hint = if unread.is_empty() {
                String::new()
            } else {
                format!(
                    " (the config file's {} is a table nothing has read so far: is it [{ROOT_SECTION}] misspelled?)",
                    unread.join(", ")
                )
            };
            invalid(format!(
                "no data root: set DATA_ROOT, pass --data-root DIR, or give `data-root` in the config file's \
                 [{ROOT_SECTION}] table{hint}"
            ))
        })?;
        let defaults = Limits::default();
        let limits = Limits {
            max_read_bytes: args.max_read_bytes.unwrap_or(defaults.max_read_bytes),
            max_write_bytes: args.max_write_bytes.unwrap_or(defaults.max_write_bytes),
            max_root_bytes: args.max_root_bytes.or(defaults.max_root_bytes),
            max_root_files: args.max_root_files.or(defaults.max_root_files),
        };
        let protected: Vec<_> = settings.protected_files().collect();
        for (setting, path) in &protected {
            refuse_inside(setting, path, &data_root).map_err(SettingsError::Invalid)?;
        }
        refuse_same_files(&protected, &data_root).map_err(SettingsError::Invalid)?;
        Root::open(&data_root, limits).map_err(|e| invalid(e.to_string()))
    }
}

/// The files the settings name that are also files of the data root, by device and inode: reached by another path
/// (a bind mount of the file onto a name in the root, a hard link), the tools could read or replace them though
/// their paths are elsewhere (red-team finding: a chain key bind-mounted into the root was read). One pass over the
/// root's entries, for the protected files that exist.
pub(super) fn refuse_same_files(
    protected: &[(&str, &Path)],
    data_root: &Path,
) -> Result<(), crate::serve::InvalidSetting> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let identities: Vec<((u64, u64), &str, &Path)> = protected
            .iter()
            .filter_map(|(setting, path)| {
                let meta = std::fs::metadata(path).ok()?;
                meta.is_file()
                    .then_some(((meta.dev(), meta.ino()), *setting, *path))
            })
            .collect();
        if identities.is_empty() {
            return Ok(());
        }
        let entries = std::fs::read_dir(data_root).map_err(|e| {
            crate::serve::InvalidSetting::new(
                DATA_ROOT,
                format!("root directory `{}`: {e}", data_root.display()),
            )
        })?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let identity = (meta.dev(), meta.ino());
            if let Some((_, setting, path)) = identities.iter().find(|(id, ..)| *id == identity) {
                return Err(crate::serve::InvalidSetting::new(
                    DATA_ROOT,
                    format!(
                        "{} ({setting}) is also in the data root {}, as `{}` (a bind mount or a hard link of it): \
                         the tools could read or replace it; take it out of the root",
                        path.display(),
                        data_root.display(),
                        entry.file_name().to_string_lossy()
                    ),
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (protected, data_root);
    Ok(())
}

/// The data root's setting, as refusals name it.
const DATA_ROOT: &str = "--data-root / DATA_ROOT";

/// How many symbolic links [`resolve`] follows before it gives up, as the kernel's `MAXSYMLINKS` (40).
const MAX_SYMLINK_HOPS: usize = 40;

/// A file the settings name (the audit log, a key, a certificate) inside the data root could be read, or
/// overwritten, through the tools.
///
/// The file is resolved as it will be opened: symlinks followed, a dangling one too (the audit log is created
/// through it). It is refused if its path is under the root's, or if its directory is the root itself by device
/// and inode (the same directory reached by another path: a bind mount, the volume mounted twice).
///
/// A refusal names the setting at fault: the data root for a root that cannot be opened or that holds the file,
/// the file's own setting for a file whose directory cannot be resolved (a missing audit log directory is the
/// audit log's mistake, not the root's).
pub(super) fn refuse_inside(
    setting: &str,
    log: &Path,
    data_root: &Path,
) -> Result<(), crate::serve::InvalidSetting> {
    let root_setting = |message: String| crate::serve::InvalidSetting::new(DATA_ROOT, message);
    let root = data_root.canonicalize().map_err(|e| {
        root_setting(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("root directory `{}` does not exist", data_root.display())
            }
            _ => format!("root directory `{}`: {e}", data_root.display()),
        })
    })?;
    let log_abs = if log.is_absolute() {
        log.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| root_setting(e.to_string()))?
            .join(log)
    };
    let resolved =
        resolve(log_abs).map_err(|message| crate::serve::InvalidSetting::new(setting, message))?;
    if resolved.starts_with(&root) || same_directory(resolved.parent(), &root) {
        return Err(root_setting(format!(
            "{} ({setting}) is inside the data root {}; put it elsewhere, where the tools cannot reach it",
            log.display(),
            data_root.display()
        )));
    }
    Ok(())
}

/// Where `path` leads: the file itself if it exists; else, when its last component is a (dangling) symlink, where
/// that points, followed again; else the file's name in its resolved directory.
fn resolve(mut path: PathBuf) -> Result<PathBuf, String> {
    for _ in 0..=MAX_SYMLINK_HOPS {
        if let Ok(resolved) = path.canonicalize() {
            return Ok(resolved);
        }
        let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_symlink() => {
                let target = std::fs::read_link(&path)
                    .map_err(|e| format!("link {}: {e}", path.display()))?;
                // A relative target is relative to the link's directory; `join` keeps an absolute one as it is.
                path = parent.join(target);
            }
            _ => {
                let parent = parent
                    .canonicalize()
                    .map_err(|e| format!("directory {}: {e}", parent.display()))?;
                return Ok(parent.join(path.file_name().unwrap_or_default()));
            }
        }
    }
    Err(format!(
        "more than {MAX_SYMLINK_HOPS} symbolic links to follow from {}",
        path.display()
    ))
}

/// Whether `dir` exists and is the directory `root` is, by device and inode.
#[cfg(unix)]
pub(super) fn same_directory(dir: Option<&Path>, root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(Ok(dir)), Ok(root)) = (dir.map(std::fs::metadata), std::fs::metadata(root)) else {
        return false;
    };
    (dir.dev(), dir.ino()) == (root.dev(), root.ino())
}

#[cfg(not(unix))]
pub(super) fn same_directory(_dir: Option<&Path>, _root: &Path) -> bool {
    false
}
