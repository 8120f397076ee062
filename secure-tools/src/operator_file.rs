//! Reading the files an operator names (keys, secrets, lockfiles): a regular file, opened without blocking, of
//! bounded size. A FIFO given as one blocked its reader for ever, and `/dev/zero` was read until memory ran out.

use std::io::{self, Read as _};
use std::path::Path;

/// The bytes of the file at `path`, `what` it is named in errors: a regular file (a FIFO or a device is refused at
/// once: it is opened without blocking) of at most `max` bytes.
pub(crate) fn read_regular(path: &Path, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|error| naming(path, error))?;
    if !file
        .metadata()
        .map_err(|error| naming(path, error))?
        .is_file()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: not a regular file; {what} is read from one",
                path.display()
            ),
        ));
    }
    read_at_most(file, max, what).map_err(|error| naming(path, error))
}

/// The most bytes read of a file an operator names for the server (a PEM certificate, key or CA bundle, a
/// revocation list, a JWKS document, an HMAC secret, a configuration file): far more than any of them holds, and a
/// bound on what a path such as `/dev/zero` would make the server read at start.
pub(crate) const MAX_SETTINGS_FILE: u64 = 64 * 1024 * 1024;

/// The bytes of the file at `path`, `what` it is named in errors, of at most `max` bytes, whatever kind of file it
/// is: a pipe (`<(...)`, `/dev/fd/N`, a way secrets are handed to a process) is read as it is written, and a device
/// such as `/dev/zero` is read no further than `max`. Its errors do not name the file: its callers' do.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> io::Result<Vec<u8>> {
    read_at_most(std::fs::File::open(path)?, max, what)
}

/// All of `reader`, refused once it gives more than `max` bytes (one more is read, to tell).
fn read_at_most(reader: impl io::Read, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("over {max} bytes, too long for {what}"),
        ));
    }
    Ok(bytes)
}

/// `error` with the file it is about, its kind kept: the bare OS message ("No such file or directory") does not say
/// which file.
pub(crate) fn naming(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_device_and_a_long_file_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            let error = read_regular(path, 16, "a key").unwrap_err();
            assert!(error.to_string().contains("not a regular file"), "{error}");
        }
        let long = dir.path().join("long");
        std::fs::write(&long, [b'k'; 17]).unwrap();
        let error = read_regular(&long, 16, "a key").unwrap_err();
        assert!(error.to_string().contains("over 16 bytes"), "{error}");
        std::fs::write(&long, [b'k'; 16]).unwrap();
        assert_eq!(read_regular(&long, 16, "a key").unwrap().len(), 16);
    }

    /// A settings file may be a pipe, but `/dev/zero` is read no further than the bound (it was read until memory
    /// ran out).
    #[test]
    fn a_settings_file_is_read_no_further_than_its_bound() {
        let error = read_bounded(Path::new("/dev/zero"), 1024, "a secret").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("over 1024 bytes, too long for a secret"),
            "{error}"
        );
        let mut piped = std::process::Command::new("sh")
            .args(["-c", "printf secret"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = piped.stdout.take().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stdout);
        let bytes = read_bounded(Path::new(&format!("/dev/fd/{fd}")), 1024, "a secret").unwrap();
        assert_eq!(bytes, b"secret");
        piped.wait().unwrap();
    }
}

/// A secret file's bytes without the line break an editor or `echo` ends it with (`\n` or `\r\n`), which is not
/// part of the secret.
#[cfg_attr(not(any(feature = "http", feature = "redis")), allow(dead_code))]
pub(crate) fn without_final_line_break(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\r\n")
        .or_else(|| text.strip_suffix(b"\n"))
        .unwrap_or(text)
}
