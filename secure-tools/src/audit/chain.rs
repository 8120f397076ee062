//! Tamper-evident audit files: each record is chained to its predecessor, so an edit, a deletion, an insertion or a
//! reordering shows, and [`verify`] names the first record concerned.
//!
//! Each line of a chained file is the record's JSON object with three more members:
//!
//! - `seq`: its number in the chain, 1 for the first record ever written, one more for each record after, across
//!   restarts (a server reopening its file continues from the last record in it);
//! - `prev`: the `hash` of the record before it (`sha256:` and 64 zeros before the first);
//! - `hash` (unkeyed) or `mac` (keyed), always the last member: over the line's bytes as written up to the comma
//!   before it, followed by `}` (so: the record with `seq` and `prev`, as one JSON object), `sha256:` and the hex
//!   SHA-256; or `hmac-sha256:` and the hex HMAC-SHA-256 under a key read from a file ([`ChainKey`]). The bytes are
//!   sealed as written, not re-serialized: verifying needs no JSON canonicalization, and a record re-encoded on its
//!   way elsewhere is verified against the file, which stays the source of truth.
//!
//! Unkeyed, the chain shows accidental damage and a careless edit, but whoever can write the file can re-chain
//! a forgery; keyed, they cannot without the key. With a checkpoint key ([`CheckpointKey`], Ed25519), the sink also
//! writes signed `checkpoint` records: at an interval while records are written, and right after `server_stop`.
//! A checkpoint's `sig` is `ed25519:` and the hex signature of `secure-tools audit checkpoint v2\n{prev}\n{seq}\n`
//! and its other members (but `sig` and the seal) in RFC 8785 canonical JSON: its own `prev` and `seq`, so it
//! vouches for every record before it, and its own `ts`, `server_id` and `records` (the verifier also accepts
//! checkpoints signed as before, `v1`, over `prev` and `seq` alone); a verifier needs only the public key,
//! and a file replaced wholesale by someone without the private key has no valid checkpoint. Records after the
//! last checkpoint (the tail) are vouched for by nothing: the verifier says how many there are, and whether the
//! file ends with the checkpoint of a clean stop.
//!
//! A sink with a checkpoint key continues a file only after finding the last checkpoint in it that its key verifies
//! (reading back from the end, through `FILE.1` if the file holds none). If records follow that checkpoint (those a
//! crash left unsigned, or records appended while the server was down), or there is none while records exist, its
//! first line is a `chain_resumed` record naming them before anything else, so that its next checkpoint, which
//! signs everything before it, signs that statement too rather than vouching for them:
//! `"checkpoint"`, the `seq` of that last checkpoint (`null`: none found), and `"unvouched"`, how many records
//! before this one it does not vouch for (the records numbered `seq - unvouched` to `seq - 1`). The verifier lists
//! such ranges ([`Verification::unvouched`]).
//!
//! A file whose last line was cut short (a crash or a power loss during a write: no newline, and no record, after a
//! record of the chain) has that fragment cut off as a sink continuing it writes its first line, which is then
//! preceded by an `incomplete_line_cut` record naming it (`bytes`, `sha256`), after the `chain_resumed` record if
//! there is one; the verifier lists those ([`Verification::lines_cut`]). A sink that writes nothing leaves the file
//! as it was. A new or emptied file continuing `FILE.1` cuts such a fragment from `FILE.1` (the record names it,
//! `file`): a crash, then a rotation, then a restart.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{AuditError, AuditRecord, AuditSink};
use base16ct::lower::encode_string as hex;

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The key of a keyed chain (HMAC-SHA-256), read from a file: keep it apart from the log (another user, another
/// machine), or whoever can rewrite the log can re-chain it.
#[derive(Clone)]
pub struct ChainKey {
    mac: Hmac<Sha256>,
    /// The key's bytes: to tell it is not the checkpoint key's in any form (see [`ChainKey::refuse_reuse_of`]).
    key: std::sync::Arc<[u8]>,
}

/// The forms a key file may hold a key in, read out of a chain key (see [`ChainKey::forms`]).
struct KeyForms {
    /// Bytes to look for the key's raw bytes in.
    raw: Vec<Vec<u8>>,
    /// Hex digits, in lower case, to look for the key's hex in.
    hex: Vec<Vec<u8>>,
}

/// How many different byte values a chain key read from a file must hold: one of fewer (32 NUL bytes, `aaaa...`) is
/// no secret (red-team finding: such keys were taken without a word). 32 random bytes hold about 30, and 64 random
/// hex digits all 16 of theirs.
pub const MIN_DISTINCT_KEY_BYTES: usize = 8;

fn key_error(kind: io::ErrorKind, path: &Path, why: &str) -> io::Error {
    io::Error::new(
        kind,
        format!(
            "the audit chain key {}: {why}; make a chain key of its own: (umask 077 && openssl rand -hex 32 > \
             chain.key)",
            path.display()
        ),
    )
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

impl ChainKey {
    /// The key in the file at `path` (its bytes, at least 32; surrounding whitespace is not part of it). Refused:
    /// a file named `*.pub`, or one beside which `FILE.pub` exists (`secure-tools audit keygen`'s public and private
    /// checkpoint keys: a chain keyed with either is re-chained by whoever verifies, or signs, too), and a key of
    /// fewer than [`MIN_DISTINCT_KEY_BYTES`] different byte values.
    pub fn read(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        // Red-team finding: a keygen key pair's files were taken as the chain key, and whoever verified with them
        // (the verifier needs the chain key) could re-chain and re-sign a forged log that then verified intact.
        if path.extension().is_some_and(|e| e == "pub") {
            return Err(key_error(
                io::ErrorKind::InvalidInput,
                path,
                "this is a checkpoint public key (`secure-tools audit keygen` writes FILE.pub for verifiers), and \
                 whoever holds it could re-chain the log",
            ));
        }
        let mut public = path.as_os_str().to_owned();
        public.push(".pub");
        if std::fs::symlink_metadata(&public).is_ok() {
            return Err(key_error(
                io::ErrorKind::InvalidInput,
                path,
                &format!(
                    "{} is beside it: it is a checkpoint signing key `secure-tools audit keygen` wrote, and the \
                     chain key is a secret of its own",
                    Path::new(&public).display()
                ),
            ));
        }
        let bytes = read_key_file(path)?;
        // Whitespace around a key written as text is not part of it; a key of raw bytes is taken whole when trimming
        // would leave it short (a red team's: one in twenty keys of `head -c 32 /dev/urandom` begins or ends with a
        // byte that reads as whitespace, and was refused as 31 bytes). Either way the bytes the key was taken as
        // before are the key still, so chains sealed with it verify as they did.
        let trimmed = bytes.trim_ascii();
        let key = if trimmed.len() < 32 && bytes.len() >= 32 && std::str::from_utf8(&bytes).is_err()
        {
            bytes.clone()
        } else {
            trimmed.to_vec()
        };
        if key.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the audit chain key {} holds {} bytes; it needs 32 or more",
                    path.display(),
                    key.len()
                ),
            ));
        }
        let mut seen = [false; 256];
        for byte in &key {
            seen[usize::from(*byte)] = true;
        }
        let distinct = seen.iter().filter(|seen| **seen).count();
        if distinct < MIN_DISTINCT_KEY_BYTES {
            return Err(key_error(
                io::ErrorKind::InvalidData,
                path,
                &format!(
                    "its {} bytes hold {distinct} different values: it is no secret (a key holds at least \
                     {MIN_DISTINCT_KEY_BYTES})",
                    key.len()
                ),
            ));
        }
        Ok(ChainKey::prepared(&key))
    }

    /// The HMAC state after the key (its inner and outer pads), made once and cloned for each record.
    fn prepared(key: &[u8]) -> Self {
        ChainKey {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"),
            key: std::sync::Arc::from(key),
        }
    }

    /// The forms a key file may hold a 32-byte key in, read out of this key: its bytes, and the same with NUL bytes
    /// left out (UTF-16 text); the hex digits in it, `0x` and every other character left out, in lower case (plain
    /// hex, `aa:bb:...` as `openssl pkey -text` prints it, `\xaa`, `0xaa, 0xbb`, dashes, whitespace); the bytes of
    /// each run of base64 in it (standard or URL-safe, padded or not, across lines: a PEM file's DER, a seed's
    /// base64 with a comment or a label around it), and the hex digits of those read as text; and the bytes of a
    /// list of decimal numbers (`[170, 187, ...]`).
    fn forms(&self) -> KeyForms {
        use base64::Engine as _;
        let without_nul: Vec<u8> = self.key.iter().copied().filter(|b| *b != 0).collect();
        let hex_digits = |text: &[u8]| -> Vec<u8> {
            let lower = text.to_ascii_lowercase();
            let mut digits = Vec::with_capacity(lower.len());
            let mut i = 0;
            while i < lower.len() {
                if lower[i] == b'0' && lower.get(i + 1) == Some(&b'x') {
                    i += 2;
                    continue;
                }
                if lower[i].is_ascii_hexdigit() {
                    digits.push(lower[i]);
                }
                i += 1;
            }
            digits
        };
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        );
        // Runs of base64 characters (whitespace inside left out), the URL-safe alphabet read as the standard one.
        let compact: Vec<u8> = without_nul
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| match b {
                b'-' => b'+',
                b'_' => b'/',
                other => other,
            })
            .collect();
        let mut decoded = Vec::new();
        for run in compact.split(|b| !(b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')) {
            if run.len() < 40 {
                continue;
            }
            // At each of the four alignments a run may start at (a label glued before it shifts it), its end cut
            // back to a length base64 can have.
            for skip in 0..4 {
                let part = &run[skip..];
                if let Some(bytes) = (0..4)
                    .filter_map(|cut| part.get(..part.len().checked_sub(cut)?))
                    .find_map(|part| engine.decode(part).ok())
                {
                    decoded.push(bytes);
                }
            }
        }
        let decimal: Vec<u8> = self
            .key
            .split(|b| !b.is_ascii_digit())
            .filter(|number| !number.is_empty())
            .map(|number| {
                std::str::from_utf8(number)
                    .ok()
                    .and_then(|n| n.parse::<u8>().ok())
            })
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_default();
        let mut raw = vec![self.key.to_vec(), without_nul.clone(), decimal];
        let mut hex = vec![hex_digits(&without_nul)];
        for bytes in decoded {
            hex.push(hex_digits(&bytes));
            raw.push(bytes);
        }
        KeyForms { raw, hex }
    }

    /// Whether this key holds `raw` (32 bytes of a checkpoint key) in one of its [`forms`](Self::forms).
    fn holds(&self, forms: &KeyForms, raw: &[u8]) -> bool {
        let contains = |haystack: &[u8], needle: &[u8]| {
            haystack
                .windows(needle.len())
                .any(|window| window == needle)
        };
        let hex = hex(raw);
        forms.raw.iter().any(|bytes| contains(bytes, raw))
            || forms
                .hex
                .iter()
                .any(|digits| contains(digits, hex.as_bytes()))
    }

    /// The Ed25519 seeds this key may be written as, in its [`forms`](Self::forms): each 32 bytes of up to 64, a PKCS#8 Ed25519
    /// key's (its DER, as a PEM file holds it), and each 64 hex digits of hex digits no more than 256 long (a seed
    /// written with anything around it; bounded, each costing a key derivation).
    fn seeds(&self, forms: &KeyForms) -> Vec<[u8; 32]> {
        /// The DER of a PKCS#8 Ed25519 private key up to its seed (RFC 8410).
        const PKCS8_ED25519: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut seeds = Vec::new();
        for bytes in &forms.raw {
            // 32 bytes, or each 32 of up to 64 (a seed with a byte or a label around it).
            if (32..=64).contains(&bytes.len()) {
                seeds.extend(
                    bytes
                        .windows(32)
                        .map(|window| <[u8; 32]>::try_from(window).expect("32 bytes")),
                );
            }
            for at in bytes
                .windows(PKCS8_ED25519.len())
                .enumerate()
                .filter(|(_, window)| *window == PKCS8_ED25519)
                .map(|(at, _)| at + PKCS8_ED25519.len())
            {
                if let Some(seed) = bytes.get(at..at + 32) {
                    seeds.push(seed.try_into().expect("32 bytes"));
                }
            }
        }
        for digits in &forms.hex {
            if (64..=256).contains(&digits.len()) {
                for window in digits.windows(64) {
                    let mut seed = [0u8; 32];
                    if base16ct::lower::decode(window, &mut seed).is_ok() {
                        seeds.push(seed);
                    }
                }
            }
        }
        seeds.sort_unstable();
        seeds.dedup();
        seeds
    }

    /// Refused when this key holds the checkpoint key's private or public half in any form a key file may hold it
    /// (raw bytes, hex in any case or with anything around it, base64), or, given only the public half (a
    /// verifier), a seed whose public key it is: given both keys, a server would sign
    /// with the key that also keys the chain, and whoever verifies a keyed chain holds its key (red-team finding:
    /// one keygen file given as both, or a copy of its `.pub` as the chain key, was taken without a word, and a
    /// forged log re-chained and re-signed with it verified intact). Pass only the public half's when that is all
    /// there is (a verifier).
    pub fn refuse_reuse_of(
        &self,
        signing: Option<&CheckpointKey>,
        public: &CheckpointPublicKey,
    ) -> Result<(), String> {
        const SIGNING: &str = "the audit chain key holds the checkpoint signing key: whoever verifies the chain \
                               (which needs its key) could sign checkpoints too; give the chain a key of its own";
        let forms = self.forms();
        if signing.is_some_and(|signing| self.holds(&forms, &signing.0.to_bytes())) {
            return Err(SIGNING.into());
        }
        if self.holds(&forms, public.0.as_bytes()) {
            return Err(
                "the audit chain key holds the checkpoint public key, which verifiers hold: any of them could \
                 re-chain the log; give the chain a key of its own"
                    .into(),
            );
        }
        // Without the signing key (a verifier): a seed written in the key whose public key is the one given (a
        // second round's: mixed-case hex, hex and a comment, base64 of the seed were taken).
        if self
            .seeds(&forms)
            .iter()
            .any(|seed| ed25519_dalek::SigningKey::from_bytes(seed).verifying_key() == public.0)
        {
            return Err(SIGNING.into());
        }
        Ok(())
    }

    /// A key from bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= 32).then(|| ChainKey::prepared(bytes))
    }
}

/// The private key that signs checkpoints (Ed25519): its 32-byte seed in hex, in a file only the server reads.
/// `secure-tools audit keygen --out FILE` makes one, and `FILE.pub` with the public key for verifiers.
#[derive(Clone)]
pub struct CheckpointKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey(public {})", self.public_hex())
    }
}

fn read_hex32(path: &Path, what: &str) -> io::Result<[u8; 32]> {
    let bytes = read_key_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: expected {what} as 64 hex digits", path.display()),
        )
    };
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl CheckpointKey {
    /// The key in the file at `path` (64 hex digits).
    /// A file named `*.pub` is refused: `keygen` writes the public key there, and a server signing with a key
    /// anyone holding the public key has would sign for forgers too.
    pub fn read(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e == "pub") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: this is a public key (`secure-tools audit keygen --out FILE` writes the private key to FILE \
                     and its public key to FILE.pub): sign with the private key",
                    path.display()
                ),
            ));
        }
        let seed = read_hex32(path, "an Ed25519 private key (seed)")?;
        Ok(CheckpointKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        CheckpointKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The seed, in hex (what the key file holds).
    pub fn seed_hex(&self) -> String {
        hex(&self.0.to_bytes())
    }

    /// The public key, which verifies its checkpoints.
    pub fn public_key(&self) -> CheckpointPublicKey {
        CheckpointPublicKey(self.0.verifying_key())
    }

    /// The public key, in hex (what verifiers are given).
    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }

    /// The signature of the checkpoint `record` (its members but `sig` and the chain's) numbered `seq` after `prev`.
    fn sign(&self, prev: &str, seq: u64, record: &Map<String, Value>) -> Option<String> {
        use ed25519_dalek::Signer as _;
        // The record has no seal yet: either name will do.
        let message = checkpoint_message(prev, seq, Some((record, "hash")))?;
        Some(format!(
            "ed25519:{}",
            hex(&self.0.sign(&message).to_bytes())
        ))
    }
}

/// The public key that checks checkpoints (64 hex digits in a file).
#[derive(Debug, Clone)]
pub struct CheckpointPublicKey(ed25519_dalek::VerifyingKey);

impl CheckpointPublicKey {
    /// The key in the file at `path` (64 hex digits, as `secure-tools audit keygen` writes to `FILE.pub`).
    /// A file beside which `FILE.pub` exists is refused: it is the private key `keygen` wrote.
    pub fn read(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let mut public = path.as_os_str().to_owned();
        public.push(".pub");
        if Path::new(&public).exists() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {} beside it: it is the private key `secure-tools audit keygen` wrote; verify with the \
                     public key, {}",
                    path.display(),
                    Path::new(&public).display(),
                    Path::new(&public).display()
                ),
            ));
        }
        let bytes = read_hex32(path, "an Ed25519 public key")?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(CheckpointPublicKey)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not an Ed25519 public key ({e}); a private key (`audit keygen --out FILE` writes it to \
                         FILE) is no public key either: verify with FILE.pub",
                        path.display()
                    ),
                )
            })
    }

    /// Whether `record`, a checkpoint of a chain sealed in `chain_key`'s mode, is one this key signed: its `sig` over
    /// its `prev`, `seq` and other members, and its `records` the count of those before it, an integer (canonical
    /// JSON signs `3.0` as `3`, so the signature alone does not pin that member's form).
    fn signed(&self, record: &Map<String, Value>, chain_key: Option<&ChainKey>) -> bool {
        let (Some(seq), Some(prev), Some(sig)) = (
            record.get("seq").and_then(Value::as_u64),
            record.get("prev").and_then(Value::as_str),
            record.get("sig").and_then(Value::as_str),
        ) else {
            return false;
        };
        let counted = seq
            .checked_sub(1)
            .is_some_and(|before| record.get("records").and_then(Value::as_u64) == Some(before));
        counted && self.verifies(prev, seq, record, seal_name(chain_key), sig)
    }

    /// Whether `sig` signs the checkpoint `record` numbered `seq` after `prev` and sealed with the member `seal`
    /// (`hash` or `mac`): as written now (every member), or as before (`prev` and `seq` only, "v1"; a signature made
    /// over every member cannot pass for that one).
    fn verifies(
        &self,
        prev: &str,
        seq: u64,
        record: &Map<String, Value>,
        seal: &str,
        sig: &str,
    ) -> bool {
        let Some(hex_sig) = sig.strip_prefix("ed25519:") else {
            return false;
        };
        if hex_sig.len() != 128 || !hex_sig.is_ascii() {
            return false;
        }
        let mut bytes = [0u8; 64];
        for (i, byte) in bytes.iter_mut().enumerate() {
            match u8::from_str_radix(&hex_sig[2 * i..2 * i + 2], 16) {
                Ok(b) => *byte = b,
                Err(_) => return false,
            }
        }
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        [Some((record, seal)), None].into_iter().any(|record| {
            checkpoint_message(prev, seq, record)
                .is_some_and(|message| self.0.verify_strict(&message, &signature).is_ok())
        })
    }
}

/// What a checkpoint's signature signs. With its `record` and the name of the chain's seal: `secure-tools audit
/// checkpoint v2`, `prev`, `seq` and the record's members but `sig`, `seq`, `prev` and that seal, in RFC 8785
/// canonical JSON, on lines of their own (a red team changed an unkeyed chain's last checkpoint's `ts`, `records` and
/// `server_id`, re-hashed it, and it still verified; a member named as the other mode's seal is signed like any
/// other). Without: `v1`, `prev` and `seq`, as checkpoints were signed before. `None` if the record cannot be put in
/// canonical form (nothing then signs or verifies).
fn checkpoint_message(
    prev: &str,
    seq: u64,
    record: Option<(&Map<String, Value>, &str)>,
) -> Option<Vec<u8>> {
    let Some((record, seal)) = record else {
        return Some(format!("secure-tools audit checkpoint v1\n{prev}\n{seq}").into_bytes());
    };
    let signed: Map<String, Value> = record
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "sig" | "seq" | "prev") && *name != seal)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut message = format!("secure-tools audit checkpoint v2\n{prev}\n{seq}\n").into_bytes();
    message.extend(serde_json_canonicalizer::to_vec(&Value::Object(signed)).ok()?);
    Some(message)
}

/// `prefix` and the digest (of SHA-256 or HMAC-SHA256: 32 bytes) in hex.
fn tagged_digest(prefix: &str, digest: &[u8]) -> String {
    let mut digits = [0u8; 64];
    let digits = base16ct::lower::encode_str(digest, &mut digits).unwrap_or_default();
    [prefix, digits].concat()
}

/// The member that seals a record, and its value: over `body` (the line as written, up to the seal) and a closing
/// brace.
fn seal(body: &[u8], key: Option<&ChainKey>) -> (&'static str, String) {
    match key {
        None => {
            let mut hash = Sha256::new();
            hash.update(body);
            hash.update(b"}");
            ("hash", tagged_digest("sha256:", &hash.finalize()))
        }
        Some(key) => {
            let mut mac = key.mac.clone();
            mac.update(body);
            mac.update(b"}");
            (
                "mac",
                tagged_digest("hmac-sha256:", &mac.finalize().into_bytes()),
            )
        }
    }
}

/// A sealed line split at its seal (the last member): the body (up to the comma before it) and the seal's
/// value; `None` unless the line ends with `,"NAME":"VALUE"}` for this name.
fn split_seal<'a>(line: &'a [u8], name: &str) -> Option<(&'a [u8], &'a str)> {
    // Nothing after the seal, a carriage return neither: the sink writes none (operator trial finding: a file turned
    // to CRLF verified intact).
    let inner = line.strip_suffix(b"\"}")?;
    let marker = format!(",\"{name}\":\"");
    let at = inner
        .windows(marker.len())
        .rposition(|w| w == marker.as_bytes())?;
    let value = std::str::from_utf8(&inner[at + marker.len()..]).ok()?;
    (!value.contains('"')).then_some((&line[..at], value))
}

/// A line's seal, checked against its bytes.
enum Seal<'a> {
    /// The line does not end with this mode's seal (`mac` keyed, `hash` unkeyed) as its last member.
    Missing,
    /// It does, and the seal does not match the bytes before it (under the key, keyed).
    Mismatch,
    /// It does, and matches: the seal's value.
    Verified(&'a str),
}

/// A file's name as the verifier's reports show it: its controls, line breaks, separators and format characters
/// escaped, so that it can neither drive the terminal nor print a line of its own (a red team's name printed
/// "intact: 99 records"; U+2028 breaks a line in some terminals).
fn shown_name(name: &str) -> String {
    use std::fmt::Write as _;
    let neutral = crate::text::neutralize(name);
    let mut shown = String::with_capacity(neutral.len());
    for c in neutral.chars() {
        // What `neutralize` lets through, for text: line feeds, tabs, the separators and the format characters
        // it keeps (a line separator breaks the line in some terminals).
        if matches!(c, '\n' | '\t') || crate::text::format_or_separator(c) {
            let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    shown
}

/// The member that seals a record in `key`'s mode: `mac` keyed, `hash` unkeyed.
fn seal_name(key: Option<&ChainKey>) -> &'static str {
    if key.is_some() { "mac" } else { "hash" }
}

/// Checks the seal `line` ends with: its last member for this mode, matching the line's bytes before it.
fn checked_seal<'a>(line: &'a [u8], key: Option<&ChainKey>) -> Seal<'a> {
    match split_seal(line, seal_name(key)) {
        None => Seal::Missing,
        Some((body, sealed)) if seal(body, key).1 == sealed => Seal::Verified(sealed),
        Some(_) => Seal::Mismatch,
    }
}

/// `line` as one JSON object, parsed strictly: a member given twice is refused, since parsers disagree on which one
/// counts.
fn strict_object(line: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(line).ok()?;
    match crate::strict_json::from_str_strict(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

struct ChainState {
    file: File,
    /// A failed write left part of a line that could not be cut off: the next line starts on a line of its own.
    torn: bool,
    seq: u64,
    prev: String,
    /// Records written since the last checkpoint, and when that was.
    unsigned: u64,
    last_checkpoint: std::time::Instant,
    /// A checkpoint was due and could not be written: it is tried again with the next record (or by the timer, or
    /// at the flush).
    checkpoint_owed: bool,
    last_sync: std::time::Instant,
    /// Records written since the last sync (with [`Durability::SyncEvery`]).
    unsynced: bool,
    key: Option<ChainKey>,
    /// With checkpoints: the file's last signed checkpoint is still to be found, and the records after it named
    /// (a `chain_resumed` record), before this sink's first line.
    resume_pending: bool,
    /// The file did not exist before this sink: a start refused before its first line removes it, still empty.
    created: bool,
    /// The rotated file whose last record the chain continued as this file was opened (it held no record of its
    /// own): its checkpoint is the one that vouches for the chain so far.
    continued_from: Option<PathBuf>,
    /// The incomplete last line found as the file was opened, cut off only as the first line is appended (a server
    /// that fails to start leaves the file as it was), and then named by an `incomplete_line_cut` record.
    cut_pending: Option<Fragment>,
    durability: Durability,
    server_id: std::sync::Arc<str>,
    mirror: Option<std::sync::Arc<dyn LineMirror>>,
    /// The log's path, and when it was last seen to name the file written (see [`ChainState::watch_path`]), and
    /// whether it was found naming another.
    path: PathBuf,
    path_checked: std::time::Instant,
    path_moved: bool,
    /// Failures a test asks for.
    #[cfg(test)]
    fail: TestFailures,
}

/// What a test makes fail: syncs, checkpoints.
#[cfg(test)]
#[derive(Default)]
struct TestFailures {
    sync: bool,
    checkpoint: bool,
    /// Every line's write.
    append: bool,
}

/// Sees each line a [`ChainedFileSink`] has written, as written (sealed: with `seq`, `prev` and the seal), right
/// after the write and in the file's order: to copy the trail elsewhere (OpenTelemetry logs) without serializing
/// the record a second time, and with the chain's fields, so the copy can be checked for gaps too.
pub trait LineMirror: Send + Sync + 'static {
    /// `line` without its newline; `record` is the record it holds, or `None` for a line that holds none of this
    /// process's records (a checkpoint, a record appended as JSON with [`ChainedFileSink::append_object`]).
    fn mirror(&self, record: Option<&AuditRecord>, line: &str);
}

/// Signed checkpoints: the key, and the longest time records go unsigned while more are written.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// The signing key.
    pub key: CheckpointKey,
    /// How often, at most, a checkpoint follows new records (default [`DEFAULT_CHECKPOINT_INTERVAL`]).
    pub interval: std::time::Duration,
}

/// How often checkpoints are written while records are: every minute.
pub const DEFAULT_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// An audit sink appending chained records to a file (see the module documentation); the runners use it whenever
/// the audit goes to a file. It holds an exclusive lock on the file (`flock`) while it lives: a second sink on the
/// same file, in this process or another, is refused.
pub struct ChainedFileSink {
    state: std::sync::Arc<Mutex<ChainState>>,
    checkpoints: Option<Checkpoints>,
    path: PathBuf,
}

/// When a record written to an audit file is forced to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Each record is handed to the operating system (one `write`) before the call's result is returned; it
    /// survives the process crashing, not the machine losing power before the kernel writes it out (the default).
    #[default]
    Write,
    /// Each record is also synced to the disk (`fdatasync`) before the call's result is returned.
    SyncEachRecord,
    /// The file is synced after a record once this long has passed since the last sync, and a record followed by
    /// silence is synced by a thread of the sink's own once it has: a power loss loses at most about that window.
    SyncEvery(std::time::Duration),
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "write" => Ok(Durability::Write),
            "record" => Ok(Durability::SyncEachRecord),
            // A duration the grammar refuses is told why (operator trial finding: `0s` was told only what was
            // expected, as if it were no duration at all).
            other if other.starts_with(|c: char| c.is_ascii_digit()) => {
                crate::call::parse_duration(other)
                    .map(Durability::SyncEvery)
                    .map_err(|message| {
                        format!("expected `write`, `record` or an interval: {message}")
                    })
            }
            other => Err(format!(
                "expected `write`, `record` or a duration such as 1s; got `{}`",
                other.escape_debug()
            )),
        }
    }
}

impl ChainedFileSink {
    /// Appends to the file at `path` (created if missing), continuing the chain of its last record.
    pub fn append_to(path: impl AsRef<Path>, key: Option<ChainKey>) -> io::Result<Self> {
        let path = path.as_ref().to_owned();
        let mut options = OpenOptions::new();
        options.create(true).read(true).append(true);
        // Records hold identities, token ids, addresses and arguments: a new file is its owner's alone.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // Whether this opening creates the file (through a link, where it points), told before it: a new file's
        // name is synced into its directory below.
        let existed = path.exists();
        // Opened without waiting (a FIFO nothing reads would hold the open), then held to a regular file.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file = options.open(&path)?;
        // Red-team finding: `/dev/null` (or a link to it) was taken, and kept no record of any call; a FIFO hung the
        // server once nothing read it. A chain is a file: its records are read back (the last, a checkpoint, a cut).
        if !file.metadata()?.is_file() {
            return Err(invalid(
                &path,
                "not a regular file (a device, a FIFO, a directory, or a link to one): an audit chain is kept in a \
                 file, read back as the server starts; name a file",
            ));
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd as _;
            let fd = file.as_raw_fd();
            // SAFETY: `fd` is this open file's, for the call's length; only the status flags are read and set.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags == -1
                || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1
            {
                return Err(naming(&path, io::Error::last_os_error()));
            }
        }
        if !existed {
            sync_directory_of(&path);
        }
        let opened = Self::continue_chain(path.clone(), file, key);
        if let Ok(sink) = &opened {
            sink.lock().created = !existed;
        }
        // A start refused leaves no file it made (an empty one would be taken for an emptied log).
        if opened.is_err() && !existed && std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&path);
        }
        opened
    }

    /// The rest of [`Self::append_to`], once the file is open.
    fn continue_chain(path: PathBuf, mut file: File, key: Option<ChainKey>) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = file.metadata()?.permissions().mode();
            let (writable, readable) = loose_mode(mode);
            if writable {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "the audit log is writable by its group or by everyone: whoever can write it can cut or \
                     rewrite records; make it writable by its owner only (chmod 600)"
                );
            }
            if readable {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "the audit log is readable by everyone: its records hold callers' identities, token ids, \
                     addresses and the arguments not redacted; make it readable by its owner (chmod 600) or a \
                     readers' group (chmod 640) only"
                );
            }
        }
        // One writer at a time: two would number records alike, and one's cut of a torn write could cut the
        // other's record. An advisory lock on the file (`flock`), held as long as the sink, released with it.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "audit log {}: another process (or another sink in this one) is appending to it; a chained \
                         file has one writer",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("audit log {}: could not be locked: {error}", path.display()),
                ));
            }
        }
        let (torn, mut cut, mut last) = match torn_end(&mut file, key.as_ref())? {
            End::Clean => (false, None, last_line(&mut file)?),
            End::MissingNewline => (true, None, last_line(&mut file)?),
            End::Fragment { fragment, before } => {
                let newline_owed = fragment.newline_owed;
                tracing::warn!(
                    path = %path.display(),
                    bytes = fragment.bytes,
                    "the audit log ends with an incomplete line (a crash or power loss during a write): it is cut \
                     off as the next record is written, and an `incomplete_line_cut` record names it (its length \
                     and SHA-256)"
                );
                // The record before the fragment, which the chain continues once the fragment is cut (none: the
                // file's first record was cut short, and the file is as good as empty).
                (newline_owed, Some(fragment), before)
            }
        };
        // Blank lines and nothing else: no record to continue, and a chain written after them would not verify
        // (the verifier reports blank lines, since the sink writes none; red-team finding: `echo > FILE`).
        if last.is_none() && cut.is_none() && file.metadata()?.len() > 0 {
            return Err(invalid(
                &path,
                "it holds blank lines and no record: empty it (`: > FILE`) or remove it, then start again",
            ));
        }
        // The file whose last record the chain continues.
        let mut from = path.clone();
        let mut continued_from = None;
        // How many rotated files (`FILE.1` on) were looked through.
        let mut examined = 0;
        if last.is_none() {
            // A new or emptied file after rotation continues the chain of the files rotated out (logrotate's names
            // for them: `FILE.1`, `FILE.2`, ...): the newest that holds a record, an empty one skipped (red-team
            // finding: two rotations while no server ran, logrotate's default `ifempty`, left an empty `FILE.1`,
            // and the chain began again at 1 beside `FILE.2`). A write cut short there (a crash, then the rotation,
            // then the restart) is cut from it as it would have been from this file, and named here (a red team's
            // torn, then rotated, log stopped the start).
            for k in 1..=MAX_ROTATED {
                let rotated = rotated_name_k(&path, k);
                let Some(mut previous) = open_rotated(&rotated)? else {
                    refuse_compressed(&rotated)?;
                    break;
                };
                examined = k;
                // Its writer gone: one still appending there (a server not stopped when its file was rotated out)
                // would go on with the chain this file continues, forking it (red-team finding). A writer's lock is
                // exclusive, so a shared one is refused only while a writer holds it (a reader's shared lock, a
                // backup's, is no writer's); let go at once, the file being only read (or, torn, locked again to be
                // cut).
                match previous.try_lock_shared() {
                    Ok(()) => previous.unlock().map_err(|error| naming(&rotated, error))?,
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(invalid(
                            &rotated,
                            "another process is appending to it (a server not stopped since the rotation?): a new \
                             file continuing its chain would fork it; stop that server, then start this one",
                        ));
                    }
                    Err(std::fs::TryLockError::Error(error)) => {
                        return Err(naming(&rotated, error));
                    }
                }
                last = match torn_end(&mut previous, key.as_ref())? {
                    // Two writes cut short, one in each file: which the chain went on past cannot be told.
                    End::Fragment { .. } if cut.is_some() => {
                        return Err(invalid(
                            &path,
                            "it holds only a record cut short, and the rotated file it continues ends with one too: \
                             verify both, then start a new file",
                        ));
                    }
                    End::Fragment {
                        mut fragment,
                        before,
                    } => {
                        tracing::warn!(
                            path = %rotated.display(),
                            bytes = fragment.bytes,
                            "the rotated audit log ends with an incomplete line (a crash or power loss during a \
                             write): it is cut off as the next record is written, and an `incomplete_line_cut` \
                             record names it"
                        );
                        let writable = open_rotated_for_cut(&rotated, &previous)?;
                        fragment.file = Some((rotated.clone(), writable));
                        cut = Some(fragment);
                        before
                    }
                    End::Clean | End::MissingNewline => last_line(&mut previous)?,
                };
                // Only a write cut short (a new file's first, a power loss, then a rotation before the restart):
                // passed over as an empty file is, its fragment cut as the chain goes on from the file before it (a
                // third round's start was refused).
                let fragment_only = last.is_none()
                    && cut
                        .as_ref()
                        .is_some_and(|c| c.file.as_ref().is_some_and(|(at, _)| *at == rotated));
                let holds_one = last.is_some();
                if !holds_one && !fragment_only && previous.metadata()?.len() > 0 {
                    return Err(invalid(
                        &rotated,
                        "it holds blank lines and no record, where the file rotated out (which a new file \
                         continues) is looked for: move it away",
                    ));
                }
                if holds_one {
                    from = rotated.clone();
                    continued_from = Some(rotated);
                    break;
                }
            }
        }
        // Nothing to continue in this file, a first record cut short included: a rotated copy beside it that the
        // chain does not continue is refused (a red team's fragment in the new file let it start afresh beside a
        // `dateext` copy).
        if last.is_none() {
            refuse_unfollowed_rotations(&path, examined)?;
        }
        let (seq, prev) = match &last {
            None => (0, GENESIS.to_owned()),
            Some(line) => continued(&from, line, key.as_ref())?,
        };
        // The record continued from is the one the chain's last write left (see `refuse_unfollowed_last`): where
        // its file ends, or where the fragment after it starts.
        if last.is_some() {
            // The fragment in the file named so (`None`: this one), if there is one there.
            let fragment_at = |in_file: Option<&Path>| {
                cut.as_ref()
                    .filter(|fragment| {
                        fragment.file.as_ref().map(|(at, _)| at.as_path()) == in_file
                    })
                    .map(|fragment| fragment.at)
            };
            match &continued_from {
                None => {
                    let end = match fragment_at(None) {
                        Some(at) => at,
                        None => file.metadata()?.len(),
                    };
                    let first = refuse_unfollowed_last(&path, &mut file, end, key.as_ref())?;
                    refuse_unfollowed_rotation(&path, &first, key.as_ref())?;
                }
                Some(rotated) => {
                    let mut previous =
                        File::open(rotated).map_err(|error| naming(rotated, error))?;
                    let end = match fragment_at(Some(rotated)) {
                        Some(at) => at,
                        None => previous.metadata()?.len(),
                    };
                    refuse_unfollowed_last(rotated, &mut previous, end, key.as_ref())?;
                }
            }
        }
        Ok(ChainedFileSink {
            state: std::sync::Arc::new(Mutex::new(ChainState {
                file,
                torn,
                seq,
                prev,
                unsigned: 0,
                last_checkpoint: std::time::Instant::now(),
                checkpoint_owed: false,
                last_sync: std::time::Instant::now(),
                unsynced: false,
                key,
                resume_pending: false,
                created: false,
                continued_from,
                cut_pending: cut,
                durability: Durability::Write,
                server_id: "secure-tools".into(),
                mirror: None,
                path: path.clone(),
                path_checked: std::time::Instant::now(),
                path_moved: false,
                #[cfg(test)]
                fail: TestFailures::default(),
            })),
            checkpoints: None,
            path,
        })
    }

    /// When records are forced to the disk (default [`Durability::Write`]). With [`Durability::SyncEvery`], a thread
    /// of its own syncs records that a quiet spell left unsynced; it ends with the sink.
    pub fn with_durability(self, durability: Durability) -> Self {
        self.lock().durability = durability;
        if let Durability::SyncEvery(interval) = durability {
            let spawned = self.spawn_maintenance("audit-sync", interval, move |state| {
                if !state.unsynced {
                    return interval;
                }
                let since = state.last_sync.elapsed();
                if since < interval {
                    return interval - since;
                }
                if let Err(error) = state.sync() {
                    tracing::error!(%error, "audit log not synced to the disk");
                }
                interval
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "no thread for timed audit syncs; records are synced as later ones come");
            }
        }
        self
    }

    /// Stamps the lines the sink writes of itself (checkpoints, `chain_resumed`, `incomplete_line_cut`) with
    /// `server_id` (default `secure-tools`; [`with_checkpoints`](Self::with_checkpoints) sets it too).
    pub fn server_id(self, server_id: &str) -> Self {
        self.lock().server_id = server_id.into();
        self
    }

    /// Hands each line written, checkpoints included, to `mirror`.
    pub fn with_mirror(self, mirror: std::sync::Arc<dyn LineMirror>) -> Self {
        self.lock().mirror = Some(mirror);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a thread named `name` that sleeps `first`, then runs `tick` on the state under its lock and sleeps as
    /// long as `tick` returns, again and again; it ends once the sink is dropped (it holds the state only while
    /// running `tick`).
    fn spawn_maintenance(
        &self,
        name: &str,
        first: std::time::Duration,
        mut tick: impl FnMut(&mut ChainState) -> std::time::Duration + Send + 'static,
    ) -> io::Result<()> {
        let state = std::sync::Arc::downgrade(&self.state);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut wait = first;
                loop {
                    std::thread::sleep(wait);
                    let Some(state) = state.upgrade() else { break };
                    wait = tick(&mut state.lock().unwrap_or_else(PoisonError::into_inner));
                }
            })
            .map(drop)
    }

    /// Also writes signed checkpoints (see the module documentation); `server_id` stamps them.
    ///
    /// A thread of its own also writes a checkpoint when records have gone unsigned for the interval with none
    /// written since, so the last records before a quiet spell are signed too; it ends with the sink.
    ///
    /// Before its first line, the sink looks for the last checkpoint in the file its key verifies, and if records
    /// follow it (or none is found while records exist), writes a `chain_resumed` record naming how many, so that
    /// its checkpoints do not vouch for records it did not write (see the module documentation).
    pub fn with_checkpoints(mut self, checkpoints: Checkpoints, server_id: &str) -> Self {
        {
            let mut state = self.lock();
            state.server_id = server_id.into();
            state.resume_pending = true;
        }
        let (key, interval) = (checkpoints.key.clone(), checkpoints.interval);
        let spawned = self.spawn_maintenance("audit-checkpoints", interval, move |state| {
            if state.unsigned > 0
                && state.last_checkpoint.elapsed() >= interval
                && let Err(error) = state.checkpoint(&key)
            {
                tracing::error!(%error, "audit checkpoint not written");
            }
            interval
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "no thread for timed audit checkpoints; they follow records only");
        }
        self.checkpoints = Some(checkpoints);
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record given as a JSON object (importing records from elsewhere into a chain); its own `seq`,
    /// `prev`, `hash` and `mac` members, if any, are replaced.
    pub fn append_object(&self, mut object: Map<String, Value>) -> Result<(), AuditError> {
        for member in ["seq", "prev", "hash", "mac"] {
            object.remove(member);
        }
        let stop = object.get("event").and_then(Value::as_str) == Some("server_stop");
        self.append_line(super::safe_json_line(&object, 1024)?, None, stop)
    }

    /// Seals `line` (a record serialized as a JSON object: `record`, when it came as one) after the last record and
    /// appends it, with a checkpoint after it when one is due (`stop`: it is the `server_stop` record).
    ///
    /// A record written is mirrored and counted for the next checkpoint, whatever follows: a failed sync is
    /// reported as [`AuditError::NotSynced`] (the record is in the file, perhaps not on the disk), and a checkpoint
    /// that cannot be written is logged and tried again later, not reported as the record's failure.
    fn append_line(
        &self,
        line: Vec<u8>,
        record: Option<&AuditRecord>,
        stop: bool,
    ) -> Result<(), AuditError> {
        let mut state = self.lock();
        // The fragment stays pending until its record is written: a failure on the way (the cut, the resumption,
        // the record) is tried again with the next line, the cut done at most once.
        if let Some(mut fragment) = state.cut_pending.take() {
            let cut = state.cut(&mut fragment);
            state.cut_pending = Some(fragment);
            cut?;
        }
        if let Some(checkpoints) = &self.checkpoints
            && state.resume_pending
        {
            state.resume(&self.path, &checkpoints.key)?;
        }
        if let Some(fragment) = &state.cut_pending {
            let mut note = serde_json::json!({
                "ts": super::Timestamp(std::time::SystemTime::now()).to_string(),
                "server_id": &*state.server_id,
                "event": "incomplete_line_cut",
                "bytes": fragment.bytes,
                "sha256": fragment.digest,
            });
            // Cut from the rotated file: named by its file name (the directory is this file's).
            if let Some(name) = fragment
                .file
                .as_ref()
                .and_then(|(path, _)| path.file_name())
            {
                note["file"] = name.to_string_lossy().into();
            }
            // Named at once and synced whatever the durability (just below: the cut is on the disk already).
            let _synced = state.append(super::safe_json_line(&note, 256)?, None)?;
            state.cut_pending = None;
            state.unsigned += 1;
            if let Err(error) = state.sync() {
                tracing::error!(%error, "the record of an incomplete line cut was not synced to the disk");
            }
        }
        let synced = state.append(line, record)?;
        state.unsigned += 1;
        if let Some(checkpoints) = &self.checkpoints
            && (stop
                || state.checkpoint_owed
                || state.last_checkpoint.elapsed() >= checkpoints.interval)
            && let Err(error) = state.checkpoint(&checkpoints.key)
        {
            tracing::error!(
                %error,
                "audit checkpoint not written after a record (the record is); tried again with the next record, \
                 after the checkpoint interval, or at the flush"
            );
        }
        synced.map_err(AuditError::NotSynced)
    }

    /// Appends a signed checkpoint now, if records were written since the last one.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut state = self.lock();
        match &self.checkpoints {
            Some(checkpoints) if state.unsigned > 0 => state.checkpoint(&checkpoints.key),
            _ => Ok(()),
        }
    }
}

/// A rotated file a file's chain continues, and its last record's number and seal.
struct ContinuedFile {
    path: PathBuf,
    file: File,
    end: (u64, String),
}

impl ChainState {
    /// Finds the last checkpoint `key` signed in the file (or, if the file holds none, in `FILE.1`, the file rotated
    /// out before it) and, if records follow it or there is none while records exist, appends a `chain_resumed`
    /// record naming them: the next checkpoint then signs that statement instead of vouching for them.
    fn resume(&mut self, path: &Path, key: &CheckpointKey) -> Result<(), AuditError> {
        if self.seq > 0 {
            let public = CheckpointPublicKey(key.0.verifying_key());
            let (end_seq, end_seal) = (self.seq, self.prev.clone());
            let mut found = last_signed_checkpoint(&mut self.file, self.key.as_ref(), &public)?;
            let mut found_in = path.to_owned();
            let mut on_chain = match found {
                Some((Checkpoint::Signed(_), at)) => {
                    links_to(&mut self.file, at, end_seq, &end_seal, self.key.as_ref())?
                }
                _ => false,
            };
            // None here: the rotated file this one continues (red-team finding: `FILE.1`'s checkpoint was taken
            // for any file's, and a forged file put in place of the rotated one had its records vouched for).
            if found.is_none()
                && let Some(mut continued) = self.continued_file(path)?
            {
                found = last_signed_checkpoint(&mut continued.file, self.key.as_ref(), &public)?;
                on_chain = match found {
                    Some((Checkpoint::Signed(_), at)) => {
                        let (last_seq, last_seal) = &continued.end;
                        links_to(
                            &mut continued.file,
                            at,
                            *last_seq,
                            last_seal,
                            self.key.as_ref(),
                        )?
                    }
                    _ => false,
                };
                found_in = continued.path;
            }
            let found = found.map(|(found, _)| found);
            // A checkpoint numbered past the record continued from belongs to another chain.
            let found = match found {
                // Operator trial finding: a file continued with another checkpoint key was then verified by
                // neither key, as a forgery.
                Some(Checkpoint::Foreign) => {
                    // A start refused leaves no file it made (red-team finding: an empty one was left).
                    if self.created && self.file.metadata().is_ok_and(|m| m.len() == 0) {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(invalid(
                        &found_in,
                        "its last checkpoint is not signed by this checkpoint key: a chain keeps one checkpoint key \
                         for its life (give the key it was written with, or move the old set away and start a new \
                         file), or the checkpoint was altered (verify the file)",
                    )
                    .into());
                }
                // Only one on the chain continued vouches for the records before it.
                Some(Checkpoint::Signed(seq)) if on_chain => Some(seq),
                Some(Checkpoint::Signed(_)) | None => None,
            };
            let found = found.filter(|seq| *seq <= self.seq);
            let unvouched = self.seq - found.unwrap_or(0);
            if unvouched > 0 {
                tracing::warn!(
                    path = %path.display(),
                    last_checkpoint = found,
                    unvouched,
                    "the audit log's last records are vouched for by no checkpoint of this key (a crash left them \
                     unsigned, or they were appended while the server was down): a `chain_resumed` record names \
                     them, and the next checkpoint does not vouch for them"
                );
                let record = serde_json::json!({
                    "ts": super::Timestamp(std::time::SystemTime::now()).to_string(),
                    "server_id": &*self.server_id,
                    "event": "chain_resumed",
                    "checkpoint": found,
                    "unvouched": unvouched,
                });
                // Written; a failed sync is the record's after it to report (it syncs this one too).
                let _synced = self.append(super::safe_json_line(&record, 256)?, None)?;
                self.unsigned += 1;
            }
        }
        self.resume_pending = false;
        Ok(())
    }

    /// The rotated file this file's chain continues, and that file's last record's number and seal: the one it
    /// was continued from as it was opened, holding no record of its own; or else the newest rotated file holding a
    /// record, if this file's first record follows that file's last one (its number next, its `prev` that record's
    /// seal). `None` when there is none, or this file begins a chain of its own.
    fn continued_file(&mut self, path: &Path) -> io::Result<Option<ContinuedFile>> {
        if let Some(continued) = &self.continued_from {
            // Nothing appended yet: the chain's last record is the rotated file's.
            let end = (self.seq, self.prev.clone());
            return Ok(open_rotated(continued)?.map(|file| ContinuedFile {
                path: continued.clone(),
                file,
                end,
            }));
        }
        let Some(first) = first_line(&mut self.file)? else {
            return Ok(None);
        };
        let Some(first) = strict_object(&first) else {
            return Ok(None);
        };
        let (Some(first_seq), Some(first_prev)) = (
            first.get("seq").and_then(Value::as_u64),
            first.get("prev").and_then(Value::as_str),
        ) else {
            return Ok(None);
        };
        for k in 1..=MAX_ROTATED {
            let rotated = rotated_name_k(path, k);
            let Some(mut previous) = open_rotated(&rotated)? else {
                return Ok(None);
            };
            let Some(line) = last_line(&mut previous)? else {
                continue;
            };
            return Ok(continued(&rotated, &line, self.key.as_ref())
                .ok()
                .filter(|(seq, seal)| seq.checked_add(1) == Some(first_seq) && seal == first_prev)
                .map(|end| ContinuedFile {
                    path: rotated,
                    file: previous,
                    end,
                }));
        }
        Ok(None)
    }

    /// The next record's `seq`; none past the largest (a file continued from one is refused at the start).
    fn next_seq(&self) -> Result<u64, AuditError> {
        self.seq.checked_add(1).ok_or_else(|| {
            AuditError::Other("the audit chain's sequence numbers are used up".into())
        })
    }

    /// Appends a checkpoint; one that could not be written is owed (and [`AuditError::NotSynced`] is one written).
    fn checkpoint(&mut self, key: &CheckpointKey) -> Result<(), AuditError> {
        self.checkpoint_owed = true;
        #[cfg(test)]
        if self.fail.checkpoint {
            return Err(AuditError::Other("a checkpoint failing for a test".into()));
        }
        let seq = self.next_seq()?;
        let mut record = Map::new();
        record.insert(
            "ts".into(),
            super::Timestamp(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        record.insert("server_id".into(), (*self.server_id).into());
        record.insert("event".into(), "checkpoint".into());
        record.insert("records".into(), self.seq.into());
        let sig = key.sign(&self.prev, seq, &record).ok_or_else(|| {
            AuditError::Other("a checkpoint that cannot be put in canonical form".into())
        })?;
        record.insert("sig".into(), sig.into());
        let record = Value::Object(record);
        let synced = self.append(super::safe_json_line(&record, 256)?, None)?;
        self.unsigned = 0;
        self.last_checkpoint = std::time::Instant::now();
        self.checkpoint_owed = false;
        synced.map_err(AuditError::NotSynced)
    }

    /// Seals and appends `line`: `Err` when nothing was written (the chain did not move on). Once it is written, the
    /// chain moves on and the mirror sees it, whatever follows; what is returned then is whether it was synced as
    /// the durability asks (an error: written, perhaps not on the disk).
    fn append(
        &mut self,
        mut line: Vec<u8>,
        record: Option<&AuditRecord>,
    ) -> Result<io::Result<()>, AuditError> {
        #[cfg(test)]
        if self.fail.append {
            return Err(AuditError::Other("a write failing for a test".into()));
        }
        // A file whose last name was removed while the server holds it open takes every record after into an inode
        // nobody can open again: they are refused instead, and so the calls (fail closed), until a restart begins a
        // file in its place (red-team finding: records went nowhere without a word, their calls answered `ok`).
        #[cfg(unix)]
        let _told = self.watch_path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            if self
                .file
                .metadata()
                .is_ok_and(|metadata| metadata.nlink() == 0)
            {
                return Err(AuditError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the audit log was removed while the server was writing it: its records would be lost; \
                     restart the server to begin a file in its place",
                )));
            }
        }
        let seq = self.next_seq()?;
        // The line keeps the record's own member order (`ts` first), the chain's members last.
        if line.pop() != Some(b'}') {
            return Err(AuditError::Io(io::Error::other(
                "a record is not a JSON object",
            )));
        }
        // `prev` and the seal are `sha256:`/`hmac-sha256:` and hex digits: nothing to escape. `prev` is written as
        // it is, and is always [`GENESIS`], a seal computed here, or the last seal of the file continued, which
        // `continued` found equal to one computed: nothing in it can close its string.
        debug_assert!(self.prev == GENESIS || is_seal(&self.prev, self.key.is_some()));
        // Pieces rather than `format!`, which took a tenth of a chained record's cost.
        line.extend_from_slice(b",\"seq\":");
        line.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(self.prev.as_bytes());
        line.push(b'"');
        let (name, value) = seal(&line, self.key.as_ref());
        for piece in [",\"", name, "\":\"", &value, "\"}\n"] {
            line.extend_from_slice(piece.as_bytes());
        }
        if self.torn {
            // What is left of a failed write ends here, as a line of its own (the verifier reports it), and this
            // record starts on the next.
            self.file.write_all(b"\n")?;
            self.torn = false;
        }
        self.write_whole(&line)?;
        self.seq = seq;
        self.prev = value;
        // The line is in the file: the mirror sees it before the sync, which may fail, and a mirror that panics
        // does not unwrite it.
        if let Some(mirror) = &self.mirror
            && let Ok(text) = std::str::from_utf8(&line[..line.len() - 1])
        {
            let mirrored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mirror.mirror(record, text)
            }));
            if mirrored.is_err() {
                tracing::error!(
                    "the audit line mirror panicked; the record is in the audit file, its copy may be missing"
                );
            }
        }
        Ok(match self.durability {
            Durability::Write => Ok(()),
            Durability::SyncEachRecord => self.sync(),
            Durability::SyncEvery(interval) => {
                // Unsynced until a sync succeeds: the timed thread tries again if this one fails.
                self.unsynced = true;
                if self.last_sync.elapsed() >= interval {
                    self.sync()
                } else {
                    Ok(())
                }
            }
        })
    }

    /// At most once a second: whether the log's path still names the file written. A file renamed away, or given
    /// another name and then removed from this one, is still written (a rotation renames it, and the restart after
    /// begins a file in its place), but nothing at the path holds the records: that is logged, once until the path
    /// names it again, so that an operator learns it (a second round's: records went to `.hidden` without a word).
    /// Whether it logged that now.
    #[cfg(unix)]
    fn watch_path(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        if self.path_checked.elapsed() < std::time::Duration::from_secs(1) {
            return false;
        }
        self.path_checked = std::time::Instant::now();
        let Ok(written) = self.file.metadata() else {
            return false;
        };
        let same = std::fs::metadata(&self.path)
            .is_ok_and(|named| named.dev() == written.dev() && named.ino() == written.ino());
        let told = !same && !self.path_moved;
        if told {
            tracing::warn!(
                path = %self.path.display(),
                "the audit log's path no longer names the file the server writes (renamed, replaced or removed): \
                 records go to the file wherever it is now, and nothing at the path holds them; restart the \
                 server to begin a file at the path (as after a rotation)"
            );
        }
        self.path_moved = !same;
        told
    }

    /// Syncs the file's data to the disk (`fdatasync`).
    fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail.sync {
            return Err(io::Error::other("a sync failing for a test"));
        }
        self.file.sync_data()?;
        self.last_sync = std::time::Instant::now();
        self.unsynced = false;
        Ok(())
    }

    /// Appends `line`, all of it or none: a write that fails part-way (a full disk, a file size limit) has what it
    /// wrote cut off again, so the chain does not advance and the next record is not glued to a fragment; if the
    /// cut fails too, the next record starts on a new line.
    fn write_whole(&mut self, line: &[u8]) -> io::Result<()> {
        let mut written = 0;
        let failed = loop {
            if written == line.len() {
                return Ok(());
            }
            match self.file.write(&line[written..]) {
                Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break error,
            }
        };
        if written > 0 {
            // Appended last, so it is the file's end (whatever was done to the file before it, a rotation that
            // truncated it included).
            let cut = self
                .file
                .metadata()
                .and_then(|m| self.file.set_len(m.len().saturating_sub(written as u64)));
            if cut.is_err() {
                self.torn = true;
            }
        }
        Err(failed)
    }
}

/// The most a key file is read: keys are tens of bytes, and a key given as `/dev/zero` was read until memory ran out.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The bytes of the key file at `path`: a regular file (a FIFO given as one blocked the verifier for ever; it is
/// opened without blocking, then refused) of at most [`MAX_KEY_FILE`] bytes.
fn read_key_file(path: &Path) -> io::Result<Vec<u8>> {
    crate::operator_file::read_regular(path, MAX_KEY_FILE, "a key")
}

// `error` with the file it is about, its kind kept: with several files (a rotated set, the keys) the bare OS message
// ("No such file or directory") does not say which.
use crate::operator_file::naming;

fn invalid(path: &Path, message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("audit log {}: {message}", path.display()),
    )
}

/// Whether `value` is a seal (or a `prev`) as the sink writes them in this mode: `hmac-sha256:` (keyed) or
/// `sha256:` (unkeyed) and 64 lowercase hex digits, so nothing in it can close the JSON string it is written into.
/// Asserted in debug builds only: every `prev` written is one by construction.
fn is_seal(value: &str, keyed: bool) -> bool {
    let prefix = if keyed { "hmac-sha256:" } else { "sha256:" };
    value.strip_prefix(prefix).is_some_and(|digits| {
        digits.len() == 64
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The `seq` and seal of the last line of a file a sink continues, checked as the verifier checks a record: the
/// line must end with its seal, the seal must match the line's bytes (under `key`, keyed), and the line must be one
/// JSON object with no member twice. A line that fails any of these is not continued from: its seal would become
/// the next record's `prev` as written.
fn continued(path: &Path, line: &[u8], key: Option<&ChainKey>) -> io::Result<(u64, String)> {
    let sealed = match checked_seal(line, key) {
        Seal::Verified(sealed) => sealed,
        Seal::Missing => {
            return Err(invalid(
                path,
                if key.is_some() {
                    "its last line is not a record sealed with a key (no `mac` as its last member): a chain keeps \
                     one mode; verify the file, then start a new one"
                } else {
                    "its last line is not a chained record (no `hash` as its last member, or keyed): verify the \
                     file, then start a new one"
                },
            ));
        }
        Seal::Mismatch => {
            return Err(invalid(
                path,
                if key.is_some() {
                    "its last record does not match its `mac`: it is sealed with another key (a chain keeps one \
                     key; give the key it was written with, or start a new file), or it was altered (verify the \
                     file)"
                } else {
                    "its last record does not match its `hash`: it was altered; verify the file, then start a new \
                     one"
                },
            ));
        }
    };
    match strict_object(line).and_then(|object| object.get("seq")?.as_u64()) {
        // The next number would not fit (a red team's planted last record panicked the server's start).
        Some(u64::MAX) => Err(invalid(
            path,
            "its last record's `seq` is the largest there is: the chain cannot go on; verify the file, then start a \
             new one",
        )),
        Some(seq) => Ok((seq, sealed.to_owned())),
        None => Err(invalid(
            path,
            "its last line is not a chained record (not one JSON object with a `seq`, or a member given twice): \
             verify the file, then start a new one",
        )),
    }
}

/// Syncs the directory holding the file at `path` (where a link leads), so that a file just created is still named
/// there after a power loss, not only its records synced. Done once, at creation; a failure is logged, not fatal: the
/// records are written all the same.
fn sync_directory_of(path: &Path) {
    #[cfg(unix)]
    {
        let synced = std::fs::canonicalize(path).and_then(|real| {
            let directory = real.parent().unwrap_or(Path::new("/"));
            File::open(directory)?.sync_all()
        });
        if let Err(error) = synced {
            tracing::warn!(
                path = %path.display(),
                %error,
                "the audit log's directory was not synced: a power loss soon after its creation could lose the file"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A log to verify, opened without waiting for a writer (a FIFO nothing writes to would hold the open for ever: a
/// red team's planted one stalled the check), then read as usual: a pipe with a writer (`<(zcat FILE.2.gz)`) is read
/// as it is written, one without reads as empty.
fn open_log(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|error| naming(path, error))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        let fd = file.as_raw_fd();
        // SAFETY: `fd` is this open file's, for the call's length; only the status flags are read and set.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1
        {
            return Err(naming(path, io::Error::last_os_error()));
        }
    }
    Ok(file)
}

/// `FILE.1` when there is one, to be read: opened without waiting (a FIFO there held the start for ever: red-team
/// finding), and a regular file only. Anything else there, or a file that cannot be opened, stops the start, named:
/// the chain is not begun afresh beside a file it may continue.
fn open_rotated(path: &Path) -> io::Result<Option<File>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        // Nothing there; but a link to nothing is something (red-team finding: the chain began afresh beside one).
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                && std::fs::symlink_metadata(path).is_err() =>
        {
            return Ok(None);
        }
        Err(error) => return Err(naming(path, error)),
    };
    if !file.metadata().map_err(|e| naming(path, e))?.is_file() {
        return Err(invalid(
            path,
            "not a regular file, where the file rotated out (which a new file continues) is looked for; move it \
             away",
        ));
    }
    Ok(Some(file))
}

/// `FILE.1`: logrotate's first name for the file rotated out.
#[cfg(test)]
fn rotated_name(path: &Path) -> PathBuf {
    rotated_name_k(path, 1)
}

/// `FILE.k`: logrotate's `k`th name for the files rotated out, the newest first.
fn rotated_name_k(path: &Path, k: usize) -> PathBuf {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(format!(".{k}"));
    PathBuf::from(rotated)
}

/// How many rotated files a new file looks through for the chain's last record, empty ones skipped.
const MAX_ROTATED: usize = 64;

/// Where the rotated file `rotated` is not, a compressed one there (`FILE.2.gz`) may hold the chain's last record,
/// which cannot be read: the start is refused, rather than the chain begun afresh beside it.
fn refuse_compressed(rotated: &Path) -> io::Result<()> {
    for suffix in [".gz", ".xz", ".bz2", ".zst", ".lz4", ".Z"] {
        let mut compressed = rotated.as_os_str().to_owned();
        compressed.push(suffix);
        let compressed = PathBuf::from(compressed);
        if std::fs::symlink_metadata(&compressed).is_ok() {
            return Err(invalid(
                &compressed,
                "the chain's last record may be in this compressed file, which is not read: the new file would \
                 begin the chain afresh; keep the newest rotated file uncompressed (logrotate's `delaycompress`), \
                 or decompress it, then start again",
            ));
        }
    }
    Ok(())
}

/// Where the chain would begin afresh: a file beside `path` named as a rotated copy of it under a name the chain is
/// not continued from may hold the chain's last record. The start is refused, naming it, rather than the chain begun
/// afresh beside it (red-team finding: after a `dateext` rotation the new file began again at 1, the set no longer
/// verified as one chain, and with the dated file removed the new one verified intact). Such a name is the log's
/// name, then a digit, or `-`, `.` or `_` and a digit (logrotate's `dateext`, `FILE-20261207`, or `FILE20261207`
/// with a `dateformat` without a separator; a compression not known here, `FILE.1.lzma`; `dateformat .%s`,
/// `FILE.1765065600`; `start 0`, `FILE.0`; `FILE.2` with no `FILE.1`), a regular file (a directory is none), but
/// the `examined` rotated files looked through already (`FILE.1` to `FILE.examined`, all empty). Not `FILE.key`,
/// `FILE-old` or another log beside it (`audit-2.jsonl`, a second replica's: logrotate's `extension`, which
/// rotates `audit.jsonl` to `audit.1.jsonl`, is not told apart from it, and not looked for); not a copy moved to
/// another directory (`olddir`), which nothing here sees. A directory that cannot be listed is not looked through.
fn refuse_unfollowed_rotations(path: &Path, examined: usize) -> io::Result<()> {
    let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
        return Ok(());
    };
    let dir = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let name = name.as_encoded_bytes();
    for entry in entries.flatten() {
        let other = entry.file_name();
        let Some(rest) = other.as_encoded_bytes().strip_prefix(name) else {
            continue;
        };
        let numbered = match rest {
            [digit, ..] if digit.is_ascii_digit() => true,
            [b'-' | b'.' | b'_', digit, ..] => digit.is_ascii_digit(),
            _ => false,
        };
        if !numbered || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        // `FILE.k`, looked through already.
        let examined_already = rest[0] == b'.'
            && rest[1] != b'0'
            && std::str::from_utf8(&rest[1..])
                .ok()
                .filter(|k| k.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| (1..=examined).contains(&k));
        if !examined_already {
            return Err(invalid(
                &dir.join(&other),
                "it looks like the audit log rotated out under a name its chain is not continued from (only \
                 FILE.1, FILE.2, ... from 1, uncompressed, are: logrotate without `dateext`, `dateformat` or \
                 `start`, with `delaycompress`); the new file would begin the chain afresh beside it: rename it \
                 FILE.1 (decompressed) to continue its chain, or move it out of this directory to begin a new \
                 one, then start again",
            ));
        }
    }
    Ok(())
}

/// The first line of a file (its first [`MAX_LINE`] bytes at most), if it has one.
fn first_line(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::new();
    (&mut *file)
        .take(MAX_LINE as u64 + 1)
        .read_to_end(&mut head)?;
    let end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    head.truncate(end);
    Ok((!head.is_empty()).then_some(head))
}

/// The `seq` of the last checkpoint in `file` that `public` verifies (its line sealed as the chain's, under
/// `chain_key` when keyed), and where its line starts: read from the end backwards, a block at a time, holding one
/// line (at most [`MAX_LINE`]; longer ones are skipped) and one block; so once through the file at most, in bounded
/// memory. Where it is in the chain is [`links_to`]'s to tell.
fn last_signed_checkpoint(
    file: &mut File,
    chain_key: Option<&ChainKey>,
    public: &CheckpointPublicKey,
) -> io::Result<Option<(Checkpoint, u64)>> {
    const BLOCK: u64 = 64 << 10;
    let mut end = file.metadata()?.len();
    // The part of a line already read whose start is in an earlier block, unless it grew past the bound.
    let mut rest: Vec<u8> = Vec::new();
    let mut too_long = false;
    let mut block = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        block.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        end = start;
        let mut upto = block.len();
        while let Some(at) = block[..upto].iter().rposition(|b| *b == b'\n') {
            let found = if too_long || upto - (at + 1) + rest.len() > MAX_LINE {
                None
            } else if rest.is_empty() {
                signed_checkpoint(&block[at + 1..upto], chain_key, public)
            } else {
                rest.splice(0..0, block[at + 1..upto].iter().copied());
                signed_checkpoint(&rest, chain_key, public)
            };
            if let Some(found) = found {
                return Ok(Some((found, start + at as u64 + 1)));
            }
            rest.clear();
            too_long = false;
            upto = at;
        }
        if !too_long {
            if upto + rest.len() > MAX_LINE {
                too_long = true;
                rest.clear();
            } else {
                rest.splice(0..0, block[..upto].iter().copied());
            }
        }
    }
    Ok(if too_long {
        None
    } else {
        signed_checkpoint(&rest, chain_key, public).map(|found| (found, 0))
    })
}

/// Whether the records from the line starting at `at` in `file` link one to the next (each sealed as the chain's,
/// numbered one past the one before, its `prev` that one's seal) up to the record numbered `end_seq` and sealed
/// `end_seal`, the one the chain continues: whether a checkpoint there is on the chain (red-team finding: a genuine
/// checkpoint line copied into a forged file, anywhere, was taken for the file's own and vouched for the forgery).
/// Reads forward once, a line at a time within [`MAX_LINE`].
fn links_to(
    file: &mut File,
    at: u64,
    end_seq: u64,
    end_seal: &str,
    key: Option<&ChainKey>,
) -> io::Result<bool> {
    file.seek(SeekFrom::Start(at))?;
    let mut reader = io::BufReader::new(&mut *file);
    let mut line = Vec::new();
    let mut previous: Option<(u64, String)> = None;
    while let Some((fits, _)) = read_line_ended(&mut reader, &mut line, MAX_LINE)? {
        if !fits {
            return Ok(false);
        }
        let Seal::Verified(seal) = checked_seal(&line, key) else {
            return Ok(false);
        };
        let Some(object) = strict_object(&line) else {
            return Ok(false);
        };
        let Some(seq) = object.get("seq").and_then(Value::as_u64) else {
            return Ok(false);
        };
        if let Some((previous_seq, previous_seal)) = &previous {
            let prev = object.get("prev").and_then(Value::as_str);
            if previous_seq.checked_add(1) != Some(seq) || prev != Some(previous_seal.as_str()) {
                return Ok(false);
            }
        }
        if seq >= end_seq {
            return Ok(seq == end_seq && seal == end_seal);
        }
        previous = Some((seq, seal.to_owned()));
    }
    Ok(false)
}

/// A checkpoint found in a file, sealed as the chain's.
#[derive(Debug, PartialEq)]
enum Checkpoint {
    /// Signed with the key looked for; its `seq`.
    Signed(u64),
    /// Not: signed with another key, or altered.
    Foreign,
}

/// The checkpoint `line` holds, if it is one sealed as the chain's: whether `public`'s key signed it.
fn signed_checkpoint(
    line: &[u8],
    chain_key: Option<&ChainKey>,
    public: &CheckpointPublicKey,
) -> Option<Checkpoint> {
    // Most lines are not checkpoints: told apart without parsing them (the sink writes this member so).
    const EVENT: &[u8] = b"\"event\":\"checkpoint\"";
    if !line.windows(EVENT.len()).any(|w| w == EVENT) {
        return None;
    }
    let Seal::Verified(_) = checked_seal(line, chain_key) else {
        return None;
    };
    let object = strict_object(line)?;
    let seq = object.get("seq")?.as_u64()?;
    if object.get("event")?.as_str()? != "checkpoint" {
        return None;
    }
    Some(if public.signed(&object, chain_key) {
        Checkpoint::Signed(seq)
    } else {
        Checkpoint::Foreign
    })
}

/// How a file opened to be continued ends.
enum End {
    /// With a newline (or empty), or in a way the chain's continuation refuses.
    Clean,
    /// With a whole record of this chain but for its newline: kept, and the next record starts on a line of its own.
    MissingNewline,
    /// With a fragment of a line after a record of this chain (`before`), or alone in the file and the start of
    /// a record as the sink writes one, or zeros (no `before`): a write cut short.
    Fragment {
        fragment: Fragment,
        before: Option<Vec<u8>>,
    },
}

/// An incomplete last line.
struct Fragment {
    /// Where it starts: the file's length once it is cut.
    at: u64,
    bytes: u64,
    /// Its SHA-256, `sha256:` and hex.
    digest: String,
    /// Whether it was cut off already.
    cut: bool,
    /// The file it ends, when not the sink's own: the rotated file a new one continues, its name and the handle
    /// it is cut through, opened and locked as the sink was made.
    file: Option<(PathBuf, File)>,
    /// Zeros after a whole record (its newline lost with them): once they are cut, the next record starts with a
    /// newline.
    newline_owed: bool,
}

impl ChainState {
    /// Cuts the fragment found as the file was opened, if the file still ends as it did then (one writer: the
    /// lock, on the sink's file or on the rotated one it ends; anything else is refused, the file left as it is).
    fn cut(&mut self, fragment: &mut Fragment) -> io::Result<()> {
        if fragment.cut {
            // By an earlier line, whose record (or the fragment's) could not be written.
            return Ok(());
        }
        let file = match &fragment.file {
            None => &self.file,
            Some((_, rotated)) => rotated,
        };
        if file.metadata()?.len() != fragment.at + fragment.bytes {
            return Err(io::Error::other(
                "the audit log changed since it was opened (its incomplete last line is not where it was)",
            ));
        }
        file.set_len(fragment.at)?;
        fragment.cut = true;
        file.sync_data()
    }
}

/// The rotated file `path` (read as `read`) opened to cut a torn last line from it: the same file (not a link, a
/// FIFO, or a file put there since), for writing, and locked as the sink's own file is, so that a server still
/// appending to it (one not restarted since the rotation) is found, and nothing else can be cut through the name
/// later (a review: reopened by name at the cut, a file swapped in of the same length would have been cut).
fn open_rotated_for_cut(path: &Path, read: &File) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(path).map_err(|error| naming(path, error))?;
    let (opened, seen) = (file.metadata()?, read.metadata()?);
    #[cfg(unix)]
    let same = {
        use std::os::unix::fs::MetadataExt as _;
        opened.dev() == seen.dev() && opened.ino() == seen.ino()
    };
    #[cfg(not(unix))]
    let same = opened.len() == seen.len();
    if !opened.is_file() || !same {
        return Err(invalid(
            path,
            "it changed while the server was starting (its incomplete last line is not cut): start again",
        ));
    }
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(invalid(
            path,
            "another process is appending to it (a server not restarted since the rotation?): its incomplete last \
             line is not cut while it writes",
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(naming(path, error)),
    }
}

/// What an audit file's mode leaves open: (writable by its group or by everyone, readable by everyone). A group
/// that reads it (`adm`, a log shipper's) is a choice; everyone reading it is not (new files are `0600`).
#[cfg(unix)]
fn loose_mode(mode: u32) -> (bool, bool) {
    (mode & 0o022 != 0, mode & 0o004 != 0)
}

/// How the end of a file opened to be continued looks, when a write into it was cut short (the process died in it,
/// or a power loss kept part of it): so that it does not stop the server's start, nor glue the next record to a
/// fragment. A last line without its newline that is a whole record sealed as this chain seals is kept. Anything
/// else after the last newline, after a record of this chain (a file that is anything else is refused as before,
/// untouched), is a fragment to cut off before the next record, and to name in an `incomplete_line_cut` record: it
/// never was a record, and no record before it is touched. The verifier reports such a fragment as an incomplete
/// last line; the sink writing past it would make it a line that is not a record, which the verifier cannot tell
/// from tampering.
fn torn_end(file: &mut File, key: Option<&ChainKey>) -> io::Result<End> {
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(End::Clean);
    }
    let start = length.saturating_sub(MAX_LINE as u64 + 1);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(length - start).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(End::Clean);
    }
    // As `continued` takes a record to continue from: sealed in this mode, one strict JSON object, with a `seq`.
    let is_record = |line: &[u8]| {
        matches!(checked_seal(line, key), Seal::Verified(_))
            && strict_object(line)
                .is_some_and(|object| object.get("seq").is_some_and(Value::is_u64))
    };
    let line_start = match tail.iter().rposition(|b| *b == b'\n') {
        Some(newline) => newline + 1,
        // The whole file is its last line.
        None if start == 0 => 0,
        // Blanks longer than any record: ended with a newline, so that the next record starts a line of its own
        // (a review's start wrote it glued onto spaces).
        None if tail.iter().all(u8::is_ascii_whitespace) => return Ok(End::MissingNewline),
        // A last line longer than any record: left as it is (and refused).
        None => return Ok(End::Clean),
    };
    let fragment = &tail[line_start..];
    let zeros = trailing_zeros(fragment);
    // Blanks (which the verifier reports) are ended with a newline like a record without its own.
    if zeros == 0 && (is_record(fragment) || fragment.iter().all(u8::is_ascii_whitespace)) {
        return Ok(End::MissingNewline);
    }
    // A whole record, then zeros: a power loss kept the record, and lost the page from its newline on (a third
    // round's start was refused). The zeros are cut as a fragment is, and the record kept.
    if zeros > 0 && zeros < fragment.len() && is_record(&fragment[..fragment.len() - zeros]) {
        let kept = &fragment[..fragment.len() - zeros];
        return Ok(End::Fragment {
            fragment: Fragment {
                at: length - zeros as u64,
                bytes: zeros as u64,
                digest: format!("sha256:{}", hex(&Sha256::digest(&fragment[kept.len()..]))),
                cut: false,
                file: None,
                newline_owed: true,
            },
            before: Some(kept.to_vec()),
        });
    }
    // What a write cut short leaves is the start of a JSON text, as the verifier takes a line still being written,
    // and after it, when a power loss kept the file's length but not its last data, zeros to the end (nothing but
    // zeros after a record's newline). Anything else (a whole object, an altered record without its newline,
    // garbage) was put there: left as it is, and refused (red-team finding: a restart cut them as a crash's
    // fragment, and tampering looked like a crash).
    if !cut_short(fragment) {
        return Ok(End::Clean);
    }
    // Cut only from a chain of this mode: the line before must be one of its records (however many blank lines
    // lie between). A file that is anything else (an older log, another mode, a file given by mistake) is left
    // untouched, and refused as before.
    let before = match last_line_before(file, length - fragment.len() as u64)? {
        Some(line) if is_record(&line) => Some(line),
        Some(_) => return Ok(End::Clean),
        // The file's first record cut short (a crash or a power loss in a new file's first write): only the start
        // of a record as the sink writes one, or zeros, and nothing before it (red-team finding: the start was
        // refused until the file was edited by hand). A file of anything else is left alone.
        None if fragment.len() as u64 == length && record_start(fragment) => None,
        None => return Ok(End::Clean),
    };
    let bytes = fragment.len() as u64;
    Ok(End::Fragment {
        fragment: Fragment {
            at: length - bytes,
            bytes,
            digest: format!("sha256:{}", hex(&Sha256::digest(fragment))),
            cut: false,
            file: None,
            newline_owed: false,
        },
        before,
    })
}

/// Whether `line`, the whole of a file, is what a write of its first line cut short leaves there: the start of a
/// line as the sink writes one first, or less of it, zeros after it or alone. A record begins `{"ts":"`, its time
/// stamp, `","server_id":"`; the sink's own notes, which a recovery writes first, `{"bytes":N,"event":
/// "incomplete_line_cut"` and `{"checkpoint":N,"event":"chain_resumed"` (red-team finding: a note cut short was
/// refused). Another program's text that begins with a `ts` member is not (red-team finding: one was cut).
fn record_start(line: &[u8]) -> bool {
    enum Part {
        Text(&'static [u8]),
        /// Up to this many bytes the predicate takes.
        Run(fn(&u8) -> bool, usize),
    }
    use Part::{Run, Text};
    // The longest time stamp the records hold is `2026-12-05T02:35:04.981561Z`, nanoseconds at most.
    let stamp = |c: &u8| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'T' | b'Z' | b'+');
    let number = |c: &u8| c.is_ascii_digit() || matches!(c, b'n' | b'u' | b'l');
    let starts: [&[Part]; 3] = [
        &[
            Text(br#"{"ts":""#),
            Run(stamp, 40),
            Text(br#"","server_id":""#),
        ],
        &[
            Text(br#"{"bytes":"#),
            Run(number, 20),
            Text(br#","event":"incomplete_line_cut""#),
        ],
        &[
            Text(br#"{"checkpoint":"#),
            Run(number, 20),
            Text(br#","event":"chain_resumed""#),
        ],
    ];
    let text = &line[..line.len() - trailing_zeros(line)];
    starts.iter().any(|parts| {
        let mut rest = text;
        for part in parts.iter() {
            match part {
                Text(start) => {
                    let n = rest.len().min(start.len());
                    if rest[..n] != start[..n] {
                        return false;
                    }
                    rest = &rest[n..];
                }
                Run(takes, most) => {
                    let n = rest.iter().take_while(|c| takes(c)).count();
                    if n > *most {
                        return false;
                    }
                    rest = &rest[n..];
                }
            }
            if rest.is_empty() {
                return true;
            }
        }
        true
    })
}

/// How many NUL bytes end `line`.
fn trailing_zeros(line: &[u8]) -> usize {
    line.iter().rev().take_while(|b| **b == 0).count()
}

/// Whether `line`, the last of a file and without its newline, is what a write cut short leaves: the start of a
/// JSON text (the whole of one is no fragment), and, where a power loss kept the file's length but not its last
/// data (ext4's or XFS's delayed allocation), zeros to its end; or zeros alone, after a record's newline.
fn cut_short(line: &[u8]) -> bool {
    let zeros = trailing_zeros(line);
    let text = &line[..line.len() - zeros];
    (zeros > 0 && text.is_empty())
        || serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err_and(|e| e.is_eof())
}

/// The last line of a file that is not blank, however many blank lines follow it (records are bounded: one is read
/// whole within 1 MiB before its end, and a line longer than that is returned cut, and refused as no record).
fn last_line(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    let length = file.metadata()?.len();
    last_line_before(file, length)
}

/// [`last_line`] of the file's first `length` bytes.
fn last_line_before(file: &mut File, length: u64) -> io::Result<Option<Vec<u8>>> {
    Ok(last_line_at(file, length)?.map(|(_, line)| line))
}

/// [`last_line_before`], and where the line starts in the file.
fn last_line_at(file: &mut File, length: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    const CHUNK: u64 = 1 << 20;
    let mut tail = Vec::new();
    // Back over blank lines, however many: a red team's two lines of 600,000 spaces after the last record (which
    // the verifier skips) had the server take its file for an empty one and start its chain again at 1.
    let mut end = length;
    let (start, text_end) = loop {
        if end == 0 {
            return Ok(None);
        }
        let start = end.saturating_sub(CHUNK);
        file.seek(SeekFrom::Start(start))?;
        tail.clear();
        (&mut *file).take(end - start).read_to_end(&mut tail)?;
        if let Some(at) = tail.iter().rposition(|b| !b.is_ascii_whitespace()) {
            break (start, at + 1);
        }
        end = start;
    };
    // The line the text ends in, whole unless it is longer than a read (then refused as not a record).
    let line_end = tail[text_end..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(tail.len(), |at| text_end + at);
    if let Some(line_start) = tail[..text_end].iter().rposition(|b| *b == b'\n') {
        return Ok(Some((
            start + line_start as u64 + 1,
            tail[line_start + 1..line_end].to_vec(),
        )));
    }
    if start == 0 {
        return Ok(Some((0, tail[..line_end].to_vec())));
    }
    // The line began before this read: read back to its start, within the bound.
    let from = start.saturating_sub(CHUNK);
    file.seek(SeekFrom::Start(from))?;
    let mut head = Vec::new();
    (&mut *file).take(start - from).read_to_end(&mut head)?;
    let line_start = head
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    head.drain(..line_start);
    head.extend_from_slice(&tail[..line_end]);
    Ok(Some((from + line_start as u64, head)))
}

/// Refuses to continue from the last record of the file `path` (its first `end` bytes, read through `file`) unless
/// it is the chain's head there: it follows the record before it (the next `seq`, its `prev` that record's seal),
/// and the file's lines that are not blank are a chain as they state it, from the first (see [`chain_links`]). Red teams' rounds: a genuine earlier line
/// appended after the last record (append access was enough), then two consecutive ones (which follow each other),
/// were continued from as the chain's head, forking it; the verifier stopped at the copies, and nothing written after
/// them was checked. The file is read through once (the start's cost: about 0.3 s for 583 MB). A new
/// file's first record must follow the last record of `FILE.1` when there is one: see [`refuse_unfollowed_rotation`].
/// Returns the file's first record's `seq` and `prev`.
fn refuse_unfollowed_last(
    path: &Path,
    file: &mut File,
    end: u64,
    key: Option<&ChainKey>,
) -> io::Result<(u64, String)> {
    let refused = || {
        invalid(
            path,
            "its last record does not follow the records before it (it is not the next `seq` after them, or its \
             `prev` is not the seal of the record before it): a line was added after the chain's end (a copy of an \
             earlier record?) or the file was altered; verify it (`secure-tools audit verify`), then move what \
             follows the chain's end away, or start a new file",
        )
    };
    let link = |line: &[u8]| {
        let object = strict_object(line)?;
        let seq = object.get("seq")?.as_u64()?;
        let prev = object.get("prev")?.as_str()?.to_owned();
        Some((seq, prev))
    };
    let Some((start, last)) = last_line_at(file, end)? else {
        return Err(refused());
    };
    let (last_seq, last_prev) = link(&last).ok_or_else(refused)?;
    if let Some((_, before)) = last_line_at(file, start)? {
        let follows = match (checked_seal(&before, key), link(&before)) {
            (Seal::Verified(sealed), Some((before_seq, _))) => {
                before_seq.checked_add(1) == Some(last_seq) && last_prev == sealed
            }
            _ => false,
        };
        if !follows {
            return Err(refused());
        }
    }
    let (first_seq, first_prev, chained_last) =
        chain_links(file, end, seal_name(key))?.ok_or_else(refused)?;
    if chained_last != last_seq {
        return Err(refused());
    }
    Ok((first_seq, first_prev))
}

/// The chain a file's first `end` bytes hold, as its lines state it: `(first seq, first prev, last seq)` when every
/// line that is not blank ends with the chain's members (`seq`, `prev`, and the seal named `seal_name`), each
/// numbered one past the one before and its `prev` that one's stated seal; `None` otherwise, or for no record. The
/// seals are not computed (the verifier's work): this finds where a line that does not continue the chain was put,
/// a copy of an earlier record or one of another chain sealed with the same key (red teams' rounds). One pass, a
/// buffer at a time, line ends found with `memchr` (about 0.3 s for 583 MB from the page cache: BENCHMARKS.md
/// section 6).
fn chain_links(
    file: &mut File,
    end: u64,
    seal_name: &str,
) -> io::Result<Option<(u64, String, u64)>> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, (&mut *file).take(end));
    let seal_marker = format!(",\"{seal_name}\":\"");
    // The chain's members as a line states them: its `seq`, its `prev` and its seal.
    let stated = |line: &[u8]| -> Option<(u64, String, String)> {
        let inner = line.strip_suffix(b"\"}")?;
        let at = memchr::memmem::rfind(inner, seal_marker.as_bytes())?;
        let seal = std::str::from_utf8(&inner[at + seal_marker.len()..]).ok()?;
        let body = inner[..at].strip_suffix(b"\"")?;
        let prev_at = memchr::memmem::rfind(body, b",\"prev\":\"")?;
        let prev = std::str::from_utf8(&body[prev_at + 9..]).ok()?;
        let numbered = &body[..prev_at];
        let seq_at = memchr::memmem::rfind(numbered, b",\"seq\":")?;
        let seq = std::str::from_utf8(&numbered[seq_at + 7..])
            .ok()?
            .parse()
            .ok()?;
        (!seal.contains('"') && !prev.contains('"'))
            .then(|| (seq, prev.to_owned(), seal.to_owned()))
    };
    let mut first: Option<(u64, String)> = None;
    let mut last: Option<(u64, String)> = None;
    let mut carried: Vec<u8> = Vec::new();
    let mut take = |line: &[u8]| -> bool {
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let Some((seq, prev, seal)) = stated(line) else {
            return false;
        };
        match &last {
            None => first = Some((seq, prev)),
            Some((last_seq, last_seal)) => {
                if last_seq.checked_add(1) != Some(seq) || prev != *last_seal {
                    return false;
                }
            }
        }
        last = Some((seq, seal));
        true
    };
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let length = available.len();
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', available) {
            let whole = if carried.is_empty() {
                take(&available[start..newline])
            } else {
                carried.extend_from_slice(&available[start..newline]);
                let whole = take(&carried);
                carried.clear();
                whole
            };
            if !whole {
                return Ok(None);
            }
            start = newline + 1;
        }
        if carried.len() + (length - start) > MAX_LINE {
            return Ok(None);
        }
        carried.extend_from_slice(&available[start..]);
        reader.consume(length);
    }
    if !carried.is_empty() && !take(&carried) {
        return Ok(None);
    }
    Ok(first
        .zip(last)
        .map(|((first, prev), (last, _))| (first, prev, last)))
}

/// Refuses a file whose first record (`first`: its `seq` and `prev`) does not follow the last record of the file
/// rotated out before it (`FILE.1`, or the newest rotated file holding a record, when there is one: a record 1
/// there, the chain begun afresh beside it, is refused too, as a third round's copy of record 1 was continued
/// from): a red team's
/// copy of an earlier record, written into the new file after a rotation, was that file's first record and so
/// continued from. A `FILE.1` ending with a write cut short is read up to it.
fn refuse_unfollowed_rotation(
    path: &Path,
    first: &(u64, String),
    key: Option<&ChainKey>,
) -> io::Result<()> {
    // The newest rotated file holding a record, as a new file's chain is continued from (an empty `FILE.1`
    // passed over, and one holding only a write cut short). None: a file beginning the chain is as it should be; one
    // continuing a chain nothing beside it holds is refused beside a rotated copy the chain is not continued from
    // (a third round's copies written into a new file beside a `dateext` copy), as an empty one is.
    let mut last = None;
    let mut examined = 0;
    for k in 1..=MAX_ROTATED {
        let Some(mut previous) = open_rotated(&rotated_name_k(path, k))? else {
            break;
        };
        examined = k;
        last = match torn_end(&mut previous, key)? {
            End::Fragment { before, .. } => before,
            End::Clean | End::MissingNewline => last_line(&mut previous)?,
        };
        if last.is_some() {
            break;
        }
    }
    if last.is_none() {
        return if first.0 <= 1 {
            Ok(())
        } else {
            refuse_unfollowed_rotations(path, examined)
        };
    }
    let follows = last.is_some_and(|line| {
        let seq = strict_object(&line).and_then(|object| object.get("seq")?.as_u64());
        matches!(checked_seal(&line, key), Seal::Verified(sealed) if sealed == first.1)
            && seq.and_then(|seq| seq.checked_add(1)) == Some(first.0)
    });
    if follows {
        return Ok(());
    }
    Err(invalid(
        path,
        "its first record does not follow the last record of FILE.1 (the file rotated out before it): a line was \
         put into the new file that the chain did not write there (a copy of an earlier record?), or FILE.1 was \
         altered; verify them (`secure-tools audit verify FILE.1 FILE`), then move the line away, or start a new \
         file",
    ))
}

impl AuditSink for ChainedFileSink {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let stop = matches!(record.event, super::AuditEvent::ServerStop { .. });
        self.append_line(super::record_line(record)?, Some(record), stop)
    }

    /// Writes a checkpoint owed (one due that could not be written, as after `server_stop`), and syncs the file
    /// unless the durability is [`Durability::Write`].
    ///
    /// A checkpoint that fails again is logged and stays owed, as after a record, not returned: a flush failing
    /// stops the shutdown before its `server_stop` record. Only the file's flush or sync fails it.
    fn flush(&self) -> Result<(), AuditError> {
        let mut state = self.lock();
        if let Some(checkpoints) = &self.checkpoints
            && state.checkpoint_owed
            && state.unsigned > 0
            && let Err(error) = state.checkpoint(&checkpoints.key)
        {
            tracing::error!(
                %error,
                "audit checkpoint owed not written at the flush; tried again with the next record, after the \
                 checkpoint interval, or at the next flush"
            );
        }
        state.file.flush()?;
        if state.durability != Durability::Write {
            state.sync().map_err(AuditError::NotSynced)?;
        }
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// The `seq` of the first record checked.
    pub first_seq: Option<u64>,
    /// The `seq` of the last record checked.
    pub last_seq: Option<u64>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// When the first problem is a line that is not a record: the first problem after it, the chain checked on from
    /// the record before that line (one such line, a blank one, say, would otherwise hide every later edit:
    /// red-team finding). Lines that are not records after the first are passed over, and counted. After any other
    /// first problem: the first record removed after it ([`Problem::Removed`]), or altered where it was due, the numbering checked on from there
    /// (records copied or moved are no gap; a chain round's decoy, a copy of an earlier record named first, hid a
    /// removal), looked for past 16 gaps at most.
    pub later: Option<Problem>,
    /// Lines that are not records of the chain (blank, junk, longer than any record, sealed another way, not strict
    /// JSON), passed over, up to where a problem stopped the check.
    pub strays: u64,
    /// Where the first [`MAX_UNVOUCHED`] of them are.
    pub stray_lines: Vec<StrayLine>,
    /// Checkpoints checked (with a public key: signatures verified).
    pub checkpoints: u64,
    /// Records after the last verified checkpoint (all of them without a checkpoint key, which verifies none):
    /// nothing vouches for them, so a cut there would not show.
    pub unsigned_tail: u64,
    /// Whether the files end with the checkpoint written right after a `server_stop` (a clean stop), its signature
    /// verified: always false without a checkpoint key, which verifies none. A cut back to an earlier clean stop looks the same: only a copy of the later
    /// checkpoints kept elsewhere (a collector's) can tell.
    pub ends_clean: bool,
    /// The last file's last line has no newline and is not a record: a record still being written (a live file),
    /// or a write cut short. It was not checked, and is not a problem: nothing vouches for it, as for a cut there.
    pub incomplete: Option<Incomplete>,
    /// With a checkpoint key: records a verified checkpoint follows but does not vouch for, as a server resuming
    /// the chain said in a `chain_resumed` record (it found them after its last checkpoint: its own records a
    /// crash left unsigned, or records appended while it was down); the first [`MAX_UNVOUCHED`] ranges, in order.
    /// Only statements a verified checkpoint signed are listed: one in the tail could be anyone's, and the tail is
    /// vouched for by nothing anyway.
    pub unvouched: Vec<Unvouched>,
    /// How many such ranges there are (more than listed when over [`MAX_UNVOUCHED`]).
    pub unvouched_ranges: u64,
    /// The `incomplete_line_cut` records, the first [`MAX_UNVOUCHED`] in order: a server restarting on a file whose
    /// last line was cut short (a crash or power loss during a write) cut that fragment off, which never was a
    /// record, and named its length and SHA-256 there.
    pub lines_cut: Vec<LineCut>,
}

/// An incomplete last line a restarting server cut off, as its `incomplete_line_cut` record names it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LineCut {
    /// The fragment's length in bytes.
    pub bytes: u64,
    /// The `incomplete_line_cut` record.
    pub seq: u64,
    /// Its file.
    pub file: String,
    /// Its line in the file, from 1.
    pub line: u64,
    /// The file the fragment was cut from when not the record's own (the rotated file a new one continued), by
    /// its name as the record gives it, shown escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The most ranges of unvouched records [`Verification::unvouched`] lists.
pub const MAX_UNVOUCHED: usize = 100;

/// Records numbered `from` to `to` that no checkpoint of the key vouches for, as the `chain_resumed` record
/// numbered `seq` says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unvouched {
    /// The first record of the range.
    pub from: u64,
    /// The last record of the range.
    pub to: u64,
    /// The last checkpoint of the key before them, by `seq`, as the resuming server found it (`None`: it found
    /// none in the file, nor in the file rotated out before it).
    pub checkpoint: Option<u64>,
    /// The `chain_resumed` record.
    pub seq: u64,
    /// Its file.
    pub file: String,
    /// Its line in the file, from 1.
    pub line: u64,
}

/// Where the line still being written is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Incomplete {
    /// The file.
    pub file: String,
    /// The line's number in it, from 1.
    pub line: u64,
}

/// A line that is not a record of the chain.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StrayLine {
    /// The file.
    pub file: String,
    /// The line's number in it, from 1.
    pub line: u64,
}

/// The first inconsistency in a chain, by `seq`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Problem {
    /// The record numbered `seq` (the one due there) is not as it was written: its seal does not match its content,
    /// or it was replaced whole. `found` is the number the line carries, which a tamperer may have changed too.
    Altered {
        seq: u64,
        found: u64,
        file: String,
        line: u64,
    },
    /// Records are missing: `seq` is the first one absent, `last` the last (the record before the one found
    /// where `seq` was due).
    Removed {
        seq: u64,
        last: u64,
        file: String,
        line: u64,
    },
    /// The record numbered `seq`, sealed as written, does not follow the one before it (`after`): its `prev` is not
    /// that record's seal. Record `after` was replaced whole (re-sealed), or the records from `seq` on come from
    /// another chain (spliced in).
    Unlinked {
        seq: u64,
        after: u64,
        file: String,
        line: u64,
    },
    /// A record that does not belong where it is: `seq` is the number found, `expected` the one due.
    OutOfOrder {
        seq: u64,
        expected: u64,
        file: String,
        line: u64,
    },
    /// A line that is not a chained record, after the record numbered `after`.
    NotARecord { after: u64, file: String, line: u64 },
    /// A checkpoint whose signature the public key does not verify.
    BadCheckpoint { seq: u64, file: String, line: u64 },
    /// The files do not start at the chain's first record (`seq` 1): the records before `first_seq` were removed,
    /// or the files are a rotated set whose oldest files are gone ([`verify_mid_chain`] accepts that).
    HeadMissing {
        first_seq: u64,
        file: String,
        line: u64,
    },
    /// A line longer than any record ([`MAX_LINE`]): it is not read whole.
    LineTooLong { after: u64, file: String, line: u64 },
    /// A public key was given, and no checkpoint signed with it is in the files.
    NoCheckpoint,
    /// The first record is sealed in the other mode: with a key (`mac`) when no key was given (verify with the
    /// chain key), or without one (`hash`) when one was (not the keyed chain the key is for: an unkeyed log, or a
    /// keyed one re-chained without the key).
    WrongMode {
        keyed: bool,
        file: String,
        line: u64,
    },
}

/// The line after the record numbered `after` (0: none yet), in words.
fn line_after(after: u64) -> String {
    if after == 0 {
        "the first line".to_owned()
    } else {
        format!("the line after record {after}")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Altered {
                seq,
                found,
                file,
                line,
            } => {
                if found == seq {
                    write!(f, "record {seq} was altered ({file}:{line})")
                } else {
                    write!(
                        f,
                        "record {seq} was altered: the line where it was due carries the number {found} ({file}:{line})"
                    )
                }
            }
            Problem::Removed {
                seq,
                last,
                file,
                line,
            } => {
                if last > seq {
                    write!(
                        f,
                        "records {seq} to {last} were removed (the gap ends at {file}:{line})"
                    )
                } else {
                    write!(
                        f,
                        "record {seq} was removed (the gap ends at {file}:{line})"
                    )
                }
            }
            Problem::Unlinked {
                seq,
                after,
                file,
                line,
            } => write!(
                f,
                "record {seq} does not follow record {after} ({file}:{line}): its `prev` is not record {after}'s \
                 seal, so record {after} was replaced, or the records from {seq} on come from another chain"
            ),
            Problem::OutOfOrder {
                seq,
                expected,
                file,
                line,
            } => write!(
                f,
                "record {seq} is out of place: record {expected} was due ({file}:{line})"
            ),
            Problem::NotARecord { after, file, line } => write!(
                f,
                "{} is not a chained record ({file}:{line})",
                line_after(*after)
            ),
            Problem::BadCheckpoint { seq, file, line } => write!(
                f,
                "checkpoint {seq} is not signed by the checkpoint key ({file}:{line}): it was forged or changed, or \
                 a record before it, since the last checkpoint that verifies, was changed and the chain re-sealed \
                 after it (with the chain key, for a keyed chain)"
            ),
            Problem::HeadMissing {
                first_seq,
                file,
                line,
            } => write!(
                f,
                "the chain's head is missing: the first record is {first_seq}, not 1 ({file}:{line}); give a \
                 rotated set oldest first (FILE.1 before FILE), and if older files were removed on purpose, verify \
                 with --mid-chain"
            ),
            Problem::LineTooLong { after, file, line } => write!(
                f,
                "{} is longer than any record ({file}:{line})",
                line_after(*after)
            ),
            Problem::NoCheckpoint => write!(f, "no checkpoint signed by the checkpoint key"),
            Problem::WrongMode {
                keyed: true,
                file,
                line,
            } => write!(
                f,
                "the chain is sealed with a key (`mac`, {file}:{line}): verify it with --key-file and that key"
            ),
            Problem::WrongMode {
                keyed: false,
                file,
                line,
            } => write!(
                f,
                "the chain is sealed without a key (`hash`, {file}:{line}), not with the key given: an unkeyed log, \
                 or a keyed one re-chained by someone without the key (whoever can write a file can make an \
                 unkeyed chain of anything)"
            ),
        }
    }
}

/// Whether a record numbered `seq` comes after line `index` (0-based) of `files[file_index]`: tells a record
/// removed from one moved. Only a line whose seal verifies (under `key`, keyed) counts: a line that merely names the
/// number does not make a deletion look like a move. Read only when a gap is found, so a verification holds one
/// line at a time.
fn appears_later<P: AsRef<Path>>(
    files: &[P],
    file_index: usize,
    index: usize,
    seq: u64,
    key: Option<&ChainKey>,
) -> io::Result<bool> {
    Ok(missing_run(files, file_index, index, seq, seq, key)?.is_none())
}

/// The most numbers of one gap [`missing_run`] looks for (a bit each).
const MAX_GAP_LOOKED_AT: u64 = 1 << 16;

/// The first run of numbers from `from` to `to` that no record after line `index` (0-based) of `files[file_index]`
/// holds (only lines whose seal verifies count), as `(first, last)`: records removed, where the others of the gap
/// were moved further on (a chain round's record 5 removed and 6 moved to the end was reported as records 5 to 6
/// removed, and with 7 removed too, 7 went unreported). `None` when every one of them comes later. Of a gap wider
/// than [`MAX_GAP_LOOKED_AT`], its first numbers are looked for; a run reaching past them is reported to `to`.
fn missing_run<P: AsRef<Path>>(
    files: &[P],
    file_index: usize,
    index: usize,
    from: u64,
    to: u64,
    key: Option<&ChainKey>,
) -> io::Result<Option<(u64, u64)>> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    let looked_at = (to - from).min(MAX_GAP_LOOKED_AT - 1);
    let mut found = vec![false; looked_at as usize + 1];
    let mut line = Vec::new();
    'files: for (n, path) in files.iter().enumerate().skip(file_index) {
        let skip = if n == file_index { index + 1 } else { 0 };
        let file = open_log(path.as_ref())?;
        // As the check passes over them: a line longer than any record is read past in a regular file (a third
        // round's record moved past one was reported removed), and stops the reading in another (it may not end).
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let mut reader = io::BufReader::new(file);
        let mut read = 0usize;
        while let Some((fits, _)) = read_line_ended(&mut reader, &mut line, MAX_LINE)
            .map_err(|e| naming(path.as_ref(), e))?
        {
            read += 1;
            if !fits && !regular {
                break 'files;
            }
            if !fits {
                skip_line(&mut reader).map_err(|e| naming(path.as_ref(), e))?;
                continue;
            }
            if read <= skip {
                continue;
            }
            if let Ok(Seq { seq: Some(seq) }) = serde_json::from_slice::<Seq>(&line)
                && (from..=from + looked_at).contains(&seq)
                && !found[(seq - from) as usize]
                && let Seal::Verified(_) = checked_seal(&line, key)
            {
                found[(seq - from) as usize] = true;
                if found[0] && from == to {
                    return Ok(None);
                }
            }
        }
    }
    let Some(first) = found.iter().position(|seen| !seen) else {
        return Ok(None);
    };
    let last = match found[first..].iter().position(|seen| *seen) {
        Some(next) => from + (first + next) as u64 - 1,
        None => to,
    };
    Ok(Some((from + first as u64, last)))
}

/// How many gaps in the numbering [`first_removed_after`] looks past the first problem for (each a read of the rest
/// of the files), so that a file of many swaps costs a bounded number of passes.
const MAX_SURVEYED_GAPS: usize = 16;

/// Past the chain's first problem, from line `index` of `files[file_index]` (0-based; `last` the last number
/// accounted for): the first run of records no line of the files holds, as the numbering runs on from there. Only
/// the numbers of lines whose seal verifies are read (a decoy before it, a copy or a record altered, already is the
/// first problem; a chain round's unsealed `{"seq":7}` hid the removal of record 7): a number at or below the last
/// is a copy or a record moved, passed over; at a gap, the gap's numbers are looked for further on, and the first
/// run of them found nowhere is the removal; if all are found, they were moved, and the numbering goes on from the
/// line's. `None` past [`MAX_SURVEYED_GAPS`] gaps, or at a line longer than any record.
fn first_removed_after<P: AsRef<Path>>(
    files: &[P],
    file_index: usize,
    index: usize,
    mut last: u64,
    key: Option<&ChainKey>,
) -> io::Result<Option<Problem>> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    let mut line = Vec::new();
    let mut gaps = 0;
    for (n, path) in files.iter().enumerate().skip(file_index) {
        let path = path.as_ref();
        let skip = if n == file_index { index } else { 0 };
        let file = open_log(path)?;
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let mut reader = io::BufReader::new(file);
        let mut number = 0usize;
        while let Some((fits, _)) =
            read_line_ended(&mut reader, &mut line, MAX_LINE).map_err(|e| naming(path, e))?
        {
            number += 1;
            if !fits && !regular {
                return Ok(None);
            }
            if !fits {
                skip_line(&mut reader).map_err(|e| naming(path, e))?;
                continue;
            }
            if number <= skip {
                continue;
            }
            let Ok(Seq { seq: Some(seq) }) = serde_json::from_slice::<Seq>(&line) else {
                continue;
            };
            if seq <= last {
                continue;
            }
            if !matches!(checked_seal(&line, key), Seal::Verified(_)) {
                // The record due, its seal not matching: altered (a third round's was reported removed).
                if last.checked_add(1) == Some(seq) {
                    return Ok(Some(Problem::Altered {
                        seq,
                        found: seq,
                        file: shown_name(&path.display().to_string()),
                        line: number as u64,
                    }));
                }
                continue;
            }
            let Some(expected) = last.checked_add(1) else {
                return Ok(None);
            };
            if seq > expected {
                if gaps == MAX_SURVEYED_GAPS {
                    return Ok(None);
                }
                gaps += 1;
                if let Some((first, through)) =
                    missing_run(files, n, number - 1, expected, seq - 1, key)?
                {
                    return Ok(Some(Problem::Removed {
                        seq: first,
                        last: through,
                        file: shown_name(&path.display().to_string()),
                        line: number as u64,
                    }));
                }
            }
            last = seq;
        }
    }
    Ok(None)
}

/// The longest line [`verify`] reads whole: records are far smaller (their values are bounded).
pub const MAX_LINE: usize = 1 << 20;

/// Checks the chain through `files`, oldest first (a rotated set), from its first record (`seq` 1, after
/// [`GENESIS`]): a head cut off is a problem. With `key`, the chain must be keyed with it; with `checkpoint_key`,
/// every checkpoint must verify and there must be one. Stops at the first problem, but for a line that is not a
/// record, past which it checks on for the first problem after it ([`Verification::later`]). Reads one line at a
/// time, in one pass (a second only past a gap, to tell a record removed from one moved).
pub fn verify<P: AsRef<Path>>(
    files: &[P],
    key: Option<&ChainKey>,
    checkpoint_key: Option<&CheckpointPublicKey>,
) -> io::Result<Verification> {
    verify_from(files, key, checkpoint_key, true)
}

/// [`verify`] for a rotated set whose oldest files were removed on purpose: the first file may start mid-chain.
/// Nothing then vouches for the head: a first record's `prev` cannot be checked, and records cut from the start of
/// the first file do not show. Records up to a verified checkpoint are still vouched for by it.
pub fn verify_mid_chain<P: AsRef<Path>>(
    files: &[P],
    key: Option<&ChainKey>,
    checkpoint_key: Option<&CheckpointPublicKey>,
) -> io::Result<Verification> {
    verify_from(files, key, checkpoint_key, false)
}

/// Reads the next line into `line` (without its `\n`), at most `max` bytes of it: `Ok(None)` at the end, else
/// whether it fit and whether it ended with a newline (`false`: the file's last, with none). A longer line is
/// `(false, false)` as soon as it is known to be longer, `line` left empty and the reader within it (a line need
/// not end: `/dev/zero`).
fn read_line_ended(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<(bool, bool)>> {
    line.clear();
    let mut any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some((true, false)));
        }
        any = true;
        let (chunk, end) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if line.len() + chunk.len() > max {
            line.clear();
            return Ok(Some((false, false)));
        }
        line.extend_from_slice(chunk);
        let used = end.unwrap_or(chunk.len());
        reader.consume(used);
        if end.is_some() {
            return Ok(Some((true, true)));
        }
    }
}

/// Reads on to the end of the line the reader is within (past its `\n`), keeping none of it.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = available.len();
                reader.consume(all);
            }
        }
    }
}

fn verify_from<P: AsRef<Path>>(
    files: &[P],
    key: Option<&ChainKey>,
    checkpoint_key: Option<&CheckpointPublicKey>,
    anchored: bool,
) -> io::Result<Verification> {
    let mut records = 0u64;
    let mut first_seq = None;
    let mut last: Option<(u64, String)> = None;
    let mut checkpoints = 0u64;
    // The `seq` of the last checkpoint verified, which vouches for every record up to it (0: none yet).
    let mut vouched_through = 0u64;
    let mut unsigned_tail = 0u64;
    let mut ends_clean = false;
    let mut after_stop = false;
    let mut incomplete = None;
    // Ranges said unvouched: those before `confirmed` are signed by a verified checkpoint after them, the rest (and
    // `pending` in all, listed or not) only since the last one.
    let mut unvouched: Vec<Unvouched> = Vec::new();
    let mut confirmed = 0usize;
    let mut unvouched_ranges = 0u64;
    let mut pending = 0u64;
    let mut lines_cut: Vec<LineCut> = Vec::new();
    // The first line that is not a record: the problem reported, the chain checked on past it (see `later`); how
    // many there are, and where the first of them are.
    let mut stray: Option<Problem> = None;
    let mut strays = 0u64;
    let mut stray_lines: Vec<StrayLine> = Vec::new();
    // A line sealed the other way (keyed for unkeyed) before any record: the problem when no record follows (the
    // whole file is of the other mode), else a line that is not a record like any other (a second round's, put
    // before record 1, stopped the check there and hid a removal after it).
    let mut wrong_mode: Option<Problem> = None;
    'files: for (file_index, path) in files.iter().enumerate() {
        let path = path.as_ref();
        let shown = shown_name(&path.display().to_string());
        let file = open_log(path)?;
        // Only a regular file's long line is read past: a device's need not end (`/dev/zero`).
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let mut reader = io::BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0u64;
        while let Some((fits, ended)) =
            read_line_ended(&mut reader, &mut line, MAX_LINE).map_err(|e| naming(path, e))?
        {
            number += 1;
            // The last file's last line, with no newline yet: a record still being written, when it is none.
            let being_written = !ended && file_index + 1 == files.len();
            // 0-based, for `appears_later`.
            let index = (number - 1) as usize;
            // A line that is not a record: counted, named among the first, and passed over.
            macro_rules! stray {
                () => {
                    stray!(Problem::NotARecord {
                        after: last.as_ref().map_or(0, |(seq, _)| *seq),
                        file: shown.clone(),
                        line: number,
                    })
                };
                ($problem:expr) => {{
                    strays += 1;
                    // Whatever follows the last checkpoint, the files do not end with it.
                    ends_clean = false;
                    if stray_lines.len() < MAX_UNVOUCHED {
                        stray_lines.push(StrayLine {
                            file: shown.clone(),
                            line: number,
                        });
                    }
                    stray.get_or_insert_with(|| $problem);
                    continue;
                }};
            }
            let at = |problem: Problem, after_it: Option<Problem>| Verification {
                records,
                first_seq,
                last_seq: last.as_ref().map(|(seq, _)| *seq),
                problem: Some(stray.clone().unwrap_or_else(|| problem.clone())),
                later: if stray.is_some() {
                    Some(problem)
                } else {
                    after_it
                },
                strays,
                stray_lines: stray_lines.clone(),
                checkpoints,
                unsigned_tail,
                ends_clean: false,
                incomplete: None,
                unvouched: unvouched[..confirmed].to_vec(),
                unvouched_ranges,
                lines_cut: lines_cut.clone(),
            };
            let after = last.as_ref().map_or(0, |(seq, _)| *seq);
            // The chain's first problem (the first but a stray line's), and the first record removed after it, the
            // numbering checked on from `accounted` (a chain round's: a decoy named first hid a removal after it).
            macro_rules! problem {
                ($problem:expr) => {
                    problem!($problem, index, after)
                };
                ($problem:expr, $from:expr, $accounted:expr) => {{
                    let after_it = if stray.is_none() {
                        first_removed_after(files, file_index, $from, $accounted, key)?
                    } else {
                        None
                    };
                    return Ok(at($problem, after_it));
                }};
            }
            // A line longer than any record is passed over like any line that is not one (a third round's, put
            // first, stopped the check there and hid a removal after it).
            if !fits && !regular {
                return Ok(at(
                    Problem::LineTooLong {
                        after,
                        file: shown,
                        line: number,
                    },
                    None,
                ));
            }
            if !fits {
                skip_line(&mut reader).map_err(|e| naming(path, e))?;
                stray!(Problem::LineTooLong {
                    after,
                    file: shown.clone(),
                    line: number,
                });
            }
            // The sink writes no line of white space, whole or being written (operator trial finding: blank lines
            // and lines of spaces, tabs or carriage returns between records verified intact, an edit that did not
            // show, and room for data).
            if line.iter().all(u8::is_ascii_whitespace) {
                stray!();
            }
            let checked = checked_seal(&line, key);
            let object = match checked {
                Seal::Missing => None,
                Seal::Mismatch | Seal::Verified(_) => strict_object(&line),
            };
            let Some(object) = object else {
                // A line still being written ends before its JSON does: one that does not, unsealed, was written
                // whole and is no record (a red team's forged record, its seal spelled with a space, passed as
                // incomplete while every JSON reader saw it; a review's, with a member twice or a byte that is not
                // UTF-8, which the strict parse refuses and lenient readers take).
                if being_written && cut_short(&line) {
                    // Something follows the last record: the files do not end with it.
                    ends_clean = false;
                    incomplete = Some(Incomplete {
                        file: shown,
                        line: number,
                    });
                    break 'files;
                }
                let other = if key.is_some() { "hash" } else { "mac" };
                if last.is_none() && split_seal(&line, other).is_some() {
                    wrong_mode.get_or_insert_with(|| Problem::WrongMode {
                        keyed: key.is_none(),
                        file: shown.clone(),
                        line: number,
                    });
                }
                stray!();
            };
            let seq = object.get("seq").and_then(Value::as_u64);
            let prev = object
                .get("prev")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let (Some(seq), Some(prev)) = (seq, prev) else {
                stray!();
            };
            let Seal::Verified(sealed) = checked else {
                // The number due here, not the line's own, which may be part of the tampering. Mid-chain, the first
                // record's number is known only from itself.
                let due = match &last {
                    Some((last_seq, _)) => last_seq.saturating_add(1),
                    None if anchored => 1,
                    None => seq,
                };
                // Taken as the record due, the numbering checked on after it (a second round's altered `seq` digit
                // was also reported as a removal of the record it altered).
                problem!(
                    Problem::Altered {
                        seq: due,
                        found: seq,
                        file: shown,
                        line: number,
                    },
                    index + 1,
                    due
                );
            };
            let sealed = sealed.to_owned();
            match &last {
                // The first record seen: the chain's start, or (mid-chain) the first of a rotated set whose
                // predecessors were removed.
                None if seq == 1 && prev != GENESIS => {
                    problem!(Problem::Altered {
                        seq,
                        found: seq,
                        file: shown,
                        line: number,
                    });
                }
                // Record 1 further on (a red team's swap of records 1 and 2): out of place, not missing.
                None if seq != 1
                    && anchored
                    && appears_later(files, file_index, index, 1, key)? =>
                {
                    problem!(Problem::OutOfOrder {
                        seq,
                        expected: 1,
                        file: shown,
                        line: number,
                    });
                }
                // The numbering checked on from this record: the head's gap is this problem, not a later one.
                None if seq != 1 && anchored => {
                    problem!(
                        Problem::HeadMissing {
                            first_seq: seq,
                            file: shown,
                            line: number,
                        },
                        index + 1,
                        seq
                    );
                }
                None => {}
                Some((last_seq, last_seal)) => {
                    let Some(expected) = last_seq.checked_add(1) else {
                        problem!(Problem::OutOfOrder {
                            seq,
                            expected: *last_seq,
                            file: shown,
                            line: number,
                        });
                    };
                    if seq > expected && prev != *last_seal {
                        // The gap's records found further on were moved, not removed: when the one due is among
                        // them, this record is out of place; else the first run found nowhere was removed, and the
                        // numbering is checked on past it, from this line (a second run in the gap is the later
                        // problem).
                        if let Some((first, through)) =
                            missing_run(files, file_index, index, expected, seq - 1, key)?
                            && first == expected
                        {
                            problem!(
                                Problem::Removed {
                                    seq: expected,
                                    last: through,
                                    file: shown,
                                    line: number,
                                },
                                index,
                                through
                            );
                        }
                    }
                    if seq != expected {
                        problem!(Problem::OutOfOrder {
                            seq,
                            expected,
                            file: shown,
                            line: number,
                        });
                    }
                    if prev != *last_seal {
                        // Sealed correctly but not after the record before it: that one was replaced whole, or
                        // this one and those after it are another chain's.
                        problem!(Problem::Unlinked {
                            seq,
                            after: *last_seq,
                            file: shown,
                            line: number,
                        });
                    }
                }
            }
            let event = object.get("event").and_then(Value::as_str);
            if event == Some("checkpoint") {
                if let Some(public) = checkpoint_key
                    && !public.signed(&object, key)
                {
                    problem!(Problem::BadCheckpoint {
                        seq,
                        file: shown,
                        line: number,
                    });
                }
                checkpoints += 1;
                // Only a checkpoint whose signature was verified vouches for the records before it, or for a clean
                // stop.
                if checkpoint_key.is_some() {
                    vouched_through = seq;
                    unsigned_tail = 0;
                    ends_clean = after_stop;
                    confirmed = unvouched.len();
                    unvouched_ranges += pending;
                    pending = 0;
                } else {
                    unsigned_tail += 1;
                    ends_clean = false;
                }
            } else {
                unsigned_tail += 1;
                ends_clean = false;
            }
            // A record's claim reaches back no further than the last checkpoint verified before it: one chained
            // on by someone else could otherwise unvouch what a checkpoint signs (a red team's claimed a million).
            let resumed_from = |count: u64| seq.saturating_sub(count).max(vouched_through + 1);
            if event == Some("chain_resumed")
                && checkpoint_key.is_some()
                && let Some(count) = object.get("unvouched").and_then(Value::as_u64)
                && count > 0
                && resumed_from(count) < seq
            {
                pending += 1;
                if unvouched.len() < MAX_UNVOUCHED {
                    unvouched.push(Unvouched {
                        from: resumed_from(count),
                        to: seq - 1,
                        checkpoint: object.get("checkpoint").and_then(Value::as_u64),
                        seq,
                        file: shown.clone(),
                        line: number,
                    });
                }
            }
            if event == Some("incomplete_line_cut") && lines_cut.len() < MAX_UNVOUCHED {
                lines_cut.push(LineCut {
                    bytes: object.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                    seq,
                    file: shown.clone(),
                    line: number,
                    from: object
                        .get("file")
                        .and_then(Value::as_str)
                        .map(|name| shown_name(&crate::audit::shorten_str(name))),
                });
            }
            after_stop = event == Some("server_stop");
            records += 1;
            first_seq.get_or_insert(seq);
            last = Some((seq, sealed));
        }
    }
    // With a checkpoint key, an empty set has none either: a file emptied is not a clean log.
    let no_checkpoint =
        (checkpoint_key.is_some() && checkpoints == 0).then_some(Problem::NoCheckpoint);
    let (problem, later) = match (stray, wrong_mode) {
        // No record at all, and a line sealed the other way: the file is of the other mode.
        (_, Some(wrong_mode)) if records == 0 => (Some(wrong_mode), None),
        (Some(stray), _) => (Some(stray), no_checkpoint),
        (None, _) => (no_checkpoint, None),
    };
    unvouched.truncate(confirmed);
    Ok(Verification {
        records,
        first_seq,
        last_seq: last.map(|(seq, _)| seq),
        problem,
        later,
        strays,
        stray_lines,
        checkpoints,
        unsigned_tail,
        ends_clean,
        incomplete,
        unvouched,
        unvouched_ranges,
        lines_cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, AuditRecord};

    fn record(n: u64) -> AuditRecord {
        AuditRecord {
            ts: crate::audit::Timestamp(std::time::SystemTime::now()),
            server_id: "test".into(),
            event: AuditEvent::ServerStop {
                reason: format!("r{n}"),
            },
        }
    }

    /// Red-team finding: a keygen key pair's files, and keys of one repeated byte, were taken as the chain key
    /// without a word; whoever verified with such a key (the verifier needs it) could re-chain and re-sign a forged
    /// log that then verified intact.
    #[test]
    fn a_chain_key_that_is_a_checkpoint_key_or_no_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signing =
            CheckpointKey::from_seed(std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a));
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        // keygen's pair: the private key beside its `.pub`, and the `.pub`.
        let private = file("ck.key", signing.seed_hex().as_bytes());
        let public = file("ck.key.pub", signing.public_hex().as_bytes());
        for (path, says) in [
            (&private, "ck.key.pub is beside it"),
            (&public, "checkpoint public key"),
        ] {
            let refused = ChainKey::read(path).expect_err("refused").to_string();
            assert!(refused.contains(says), "{refused}");
        }
        // Copies under names that say nothing: refused given the checkpoint key (the server) or its public half
        // (the verifier), in either case, with a line break after.
        let seed_copy = file("seed-copy", format!("{}\n", signing.seed_hex()).as_bytes());
        let public_copy = file(
            "public-copy",
            signing.public_hex().to_uppercase().as_bytes(),
        );
        let public_key = signing.public_key();
        let seed_key = ChainKey::read(&seed_copy).unwrap();
        let public_as_chain = ChainKey::read(&public_copy).unwrap();
        for signing in [Some(&signing), None] {
            let refused = seed_key
                .refuse_reuse_of(signing, &public_key)
                .expect_err("the signing key as the chain key");
            assert!(
                refused.contains("holds the checkpoint signing key"),
                "{refused}"
            );
            let refused = public_as_chain
                .refuse_reuse_of(signing, &public_key)
                .expect_err("the public key as the chain key");
            assert!(
                refused.contains("holds the checkpoint public key"),
                "{refused}"
            );
        }
        // A second round's: the same keys written otherwise were taken (and a log forged with the seed in
        // mixed-case hex verified intact).
        use base64::Engine as _;
        let seed_hex = signing.seed_hex();
        let mixed = |hex: &str| -> String {
            hex.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        };
        let spaced: String = seed_hex
            .as_bytes()
            .chunks(8)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let seed = signing.0.to_bytes();
        let public_raw = *public_key.0.as_bytes();
        let written: Vec<(&str, Vec<u8>, &str)> = vec![
            ("mixed", mixed(&seed_hex).into_bytes(), "signing"),
            (
                "comment",
                format!("{seed_hex}  # chain").into_bytes(),
                "signing",
            ),
            ("0x", format!("0x{seed_hex}").into_bytes(), "signing"),
            ("spaced", spaced.into_bytes(), "signing"),
            (
                "base64",
                base64::engine::general_purpose::STANDARD
                    .encode(seed)
                    .into_bytes(),
                "signing",
            ),
            (
                "base64url",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(seed)
                    .into_bytes(),
                "signing",
            ),
            ("raw", seed.to_vec(), "signing"),
            (
                "mixedpub",
                mixed(&signing.public_hex()).into_bytes(),
                "public",
            ),
            ("rawpub", public_raw.to_vec(), "public"),
        ];
        // A third round's: a PKCS#8 PEM file as openssl writes one, hex with punctuation, escapes or a C array,
        // decimal bytes, UTF-16, base64 of the hex, base64 with a comment, a label or a byte before it, and hex
        // inside a longer run of hex were taken too.
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let pkcs8: Vec<u8> = [
            &[
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ][..],
            &seed[..],
        ]
        .concat();
        let joined = |bytes: &[u8], each: &dyn Fn(u8) -> String, between: &str| {
            bytes
                .iter()
                .map(|b| each(*b))
                .collect::<Vec<_>>()
                .join(between)
        };
        let colons = |bytes: &[u8]| joined(bytes, &|b| format!("{b:02x}"), ":");
        let more: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "pem",
                format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    b64(&pkcs8)
                )
                .into_bytes(),
                "signing",
            ),
            ("der", pkcs8.clone(), "signing"),
            ("colons", colons(&seed).into_bytes(), "signing"),
            (
                "escapes",
                joined(&seed, &|b| format!("\\x{b:02x}"), "").into_bytes(),
                "signing",
            ),
            (
                "c_array",
                joined(&seed, &|b| format!("0x{b:02X}"), ", ").into_bytes(),
                "signing",
            ),
            (
                "decimal",
                format!("[{}]", joined(&seed, &|b| b.to_string(), ", ")).into_bytes(),
                "signing",
            ),
            (
                "utf16",
                seed_hex.bytes().flat_map(|b| [b, 0]).collect(),
                "signing",
            ),
            (
                "b64_of_hex",
                b64(seed_hex.as_bytes()).into_bytes(),
                "signing",
            ),
            (
                "b64_comment",
                format!("{} # chain", b64(&seed)).into_bytes(),
                "signing",
            ),
            (
                "b64_label",
                format!("key={}", b64(&seed)).into_bytes(),
                "signing",
            ),
            (
                "b64_shifted",
                b64(&[&[7u8][..], &seed[..]].concat()).into_bytes(),
                "signing",
            ),
            (
                "hex_long",
                format!("ab{seed_hex}cdef00112233445566778899aabbccddeeff00112233445566778899")
                    .into_bytes(),
                "signing",
            ),
            ("pub_colons", colons(&public_raw).into_bytes(), "public"),
            (
                "openssl_text",
                format!(
                    "ED25519 Private-Key:\npriv:\n    {}\npub:\n    {}\n",
                    colons(&seed),
                    colons(&public_raw)
                )
                .into_bytes(),
                "signing",
            ),
        ];
        for (name, bytes, half) in written.into_iter().chain(more) {
            let Ok(key) = ChainKey::read(file(name, &bytes)) else {
                continue; // refused on its own (too few bytes, say)
            };
            for given in [Some(&signing), None] {
                let refused = key.refuse_reuse_of(given, &public_key).expect_err(name);
                // Given the public half only, a file holding both halves is found holding the public key first.
                let half = if name == "openssl_text" && given.is_none() {
                    "public"
                } else {
                    half
                };
                assert!(
                    refused.contains(&format!("holds the checkpoint {half} key")),
                    "{name}: {refused}"
                );
            }
        }
        // Keys of their own, made in the usual ways, are taken.
        for n in 0u8..50 {
            let random: Vec<u8> = (0u8..48)
                .map(|i| i.wrapping_mul(97).wrapping_add(n.wrapping_mul(31)) ^ 0x5c)
                .collect();
            for (name, bytes) in [
                ("own_hex", hex(&random).into_bytes()),
                ("own_base64", b64(&random).into_bytes()),
                ("own_raw", random.clone()),
            ] {
                let Ok(key) = ChainKey::read(file(name, &bytes)) else {
                    continue;
                };
                assert_eq!(
                    key.refuse_reuse_of(Some(&signing), &public_key),
                    Ok(()),
                    "{name} {n}"
                );
            }
        }
        // No secret.
        for (name, bytes) in [
            ("zeros", vec![0u8; 32]),
            ("a", vec![b'a'; 40]),
            ("abab", b"ab".repeat(20)),
            ("seven", b"abcdefg".repeat(6)),
        ] {
            let refused = ChainKey::read(file(name, &bytes))
                .expect_err(name)
                .to_string();
            assert!(refused.contains("it is no secret"), "{name}: {refused}");
        }
        // A second round's: one in twenty keys of `head -c 32 /dev/urandom` begins or ends with a byte that reads
        // as whitespace, and was refused as 31 bytes. Raw bytes are taken whole when trimming leaves them short.
        let mut binary: Vec<u8> = (0u8..31).map(|i| i.wrapping_mul(53) | 0x80).collect();
        binary.push(b' ');
        ChainKey::read(file("binary", &binary)).expect("a raw key ending in a space byte");
        // A key of its own is taken, with either checkpoint key.
        let own = ChainKey::read(file(
            "chain.key",
            b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
        ))
        .unwrap();
        assert_eq!(own.refuse_reuse_of(Some(&signing), &public_key), Ok(()));
    }

    /// Red-team finding: after a rotation to a dated name (logrotate's `dateext`, the default on some distributions)
    /// or one compressed with a compression not known here, the new file began the chain afresh without a word.
    #[test]
    fn a_new_file_beside_a_rotated_copy_it_cannot_continue_is_refused() {
        for sibling in [
            "audit.jsonl-20261207",
            "audit.jsonl.1.lzma",
            "audit.jsonl_1",
            "audit.jsonl.2026-12-07",
            // A second round's: these began the chain afresh too.
            "audit.jsonl.0",
            "audit.jsonl.2",
            "audit.jsonl.1765065600",
            "audit.jsonl.20261207",
            // A third round's: a `dateformat` without a separator.
            "audit.jsonl20261207",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            std::fs::write(dir.path().join(sibling), b"records\n").unwrap();
            let refused = ChainedFileSink::append_to(&path, None)
                .err()
                .unwrap_or_else(|| panic!("{sibling}: taken"))
                .to_string();
            assert!(
                refused.contains(sibling) && refused.contains("rename it FILE.1"),
                "{refused}"
            );
        }
        // A chain round's: the new file holding only a first record cut short (as a crash leaves it) was cut and
        // the chain begun again at 1 beside the dated copy.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(dir.path().join("audit.jsonl-20261207"), b"records\n").unwrap();
        std::fs::write(&path, b"{\"ts\":\"2026-12-0").unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("a fragment does not make the new file a continuation")
            .to_string();
        assert!(refused.contains("audit.jsonl-20261207"), "{refused}");
        // Names that are not rotated copies, and the rotated files the chain continues from, are no obstacle.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for other in [
            "audit.jsonl.key",
            "audit.jsonl.pub",
            "audit.jsonl-old",
            "other.jsonl-1",
            "audit-old.jsonl",
            "audit.2.txt",
            // A third round's false positives: another replica's log, and a logrotate `extension` name, which
            // cannot be told apart from it.
            "audit-2.jsonl",
            "audit.1.jsonl",
        ] {
            std::fs::write(dir.path().join(other), b"x").unwrap();
        }
        // Nor a directory so named (a third round's was refused, told to rename it FILE.1).
        std::fs::create_dir(dir.path().join("audit.jsonl-2025")).unwrap();
        write(&path, None, 1, 2);
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        write(&path, None, 3, 3);
        let rotated = dir.path().join("audit.jsonl.1");
        let checked = verify(&[&rotated, &path], None, None).unwrap();
        assert_eq!((checked.problem, checked.records), (None, 3));
    }

    /// Red-team finding: the audit file removed while the server wrote it took every record after into an inode
    /// nobody could open again, and the calls were answered `ok`. Its records are refused now (so are the calls).
    #[cfg(unix)]
    #[test]
    fn records_for_a_file_removed_under_the_sink_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = ChainedFileSink::append_to(&path, None).unwrap();
        sink.write(&record(1)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let refused = sink.write(&record(2)).expect_err("refused").to_string();
        assert!(refused.contains("was removed"), "{refused}");
    }

    /// A second round's: the audit file renamed away, or linked under another name and removed from its own, went on
    /// being written without a word, nothing at its path. It is logged once (the records are still written there,
    /// as after a rotation's rename).
    #[cfg(unix)]
    #[test]
    fn a_log_whose_path_names_another_file_is_told_once() {
        for how in ["renamed", "linked then removed", "replaced"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let elsewhere = dir.path().join("elsewhere");
            let sink = ChainedFileSink::append_to(&path, None).unwrap();
            sink.write(&record(1)).unwrap();
            match how {
                "renamed" => std::fs::rename(&path, &elsewhere).unwrap(),
                "linked then removed" => {
                    std::fs::hard_link(&path, &elsewhere).unwrap();
                    std::fs::remove_file(&path).unwrap();
                }
                _ => {
                    std::fs::rename(&path, &elsewhere).unwrap();
                    std::fs::write(&path, b"").unwrap();
                }
            }
            let a_while_ago = |state: &mut ChainState| {
                state.path_checked = std::time::Instant::now()
                    .checked_sub(std::time::Duration::from_secs(2))
                    .unwrap();
            };
            let mut state = sink.lock();
            a_while_ago(&mut state);
            assert!(state.watch_path(), "{how}: not told");
            a_while_ago(&mut state);
            assert!(!state.watch_path(), "{how}: told twice");
            drop(state);
            sink.write(&record(2)).unwrap();
            assert_eq!(lines(&elsewhere).len(), 2, "{how}");
        }
        // A path that names the file is not told of.
        let dir = tempfile::tempdir().unwrap();
        let sink = ChainedFileSink::append_to(dir.path().join("audit.jsonl"), None).unwrap();
        let mut state = sink.lock();
        state.path_checked = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(2))
            .unwrap();
        assert!(!state.watch_path());
    }

    /// Red-team finding: a caller's client name, request id or tool name holding C1 controls (U+009B, a one-byte
    /// CSI), bidirectional overrides or DEL reached the audit file as they were. They are written as JSON escapes,
    /// which read back as the same text; other text is written as it is.
    #[test]
    fn characters_a_terminal_acts_on_are_escaped_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = ChainedFileSink::append_to(&path, None).unwrap();
        let reason = "csi\u{9b}31m rlo\u{202e}txt del\u{7f} zwsp\u{200b} tag\u{e0041} ls\u{2028} caf\u{e9} \u{1f600}";
        let mut stop = record(1);
        stop.event = AuditEvent::ServerStop {
            reason: reason.into(),
        };
        sink.write(&stop).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        for hidden in [
            '\u{9b}',
            '\u{202e}',
            '\u{7f}',
            '\u{200b}',
            '\u{e0041}',
            '\u{2028}',
        ] {
            assert!(
                !text.contains(hidden),
                "{hidden:?} written as it is: {text}"
            );
        }
        assert!(
            text.contains("\\u009b31m") && text.contains("\\udb40\\udc41"),
            "{text}"
        );
        assert!(text.contains("caf\u{e9} \u{1f600}"), "{text}");
        let read: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(read["reason"], reason);
        assert_eq!(verify(&[&path], None, None).unwrap().problem, None);
    }

    fn write(path: &Path, key: Option<&ChainKey>, from: u64, to: u64) {
        let sink = ChainedFileSink::append_to(path, key.cloned()).unwrap();
        for n in from..=to {
            sink.write(&record(n)).unwrap();
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A chain of `records` records at `path` (in `key`'s mode) whose last `cut` bytes are gone, as a crash during
    /// a write leaves it; what is left.
    fn torn(path: &Path, key: Option<&ChainKey>, records: u64, cut: usize) -> Vec<u8> {
        write(path, key, 1, records);
        let mut left = std::fs::read(path).unwrap();
        left.truncate(left.len() - cut);
        std::fs::write(path, &left).unwrap();
        left
    }

    fn put(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    /// Operator's trial: a crash or power loss during a write leaves the last line cut short. The verifier reports it
    /// as incomplete (exit 0), but the server refused to start on the file ("not a chained record"), so the audit
    /// (and so the server) stayed down until someone repaired the file by hand. Now the fragment, which never was a
    /// record, is cut off as the file is opened, a record names its length and SHA-256, and the chain goes on,
    /// keyed or not; the verifier lists the cut.
    #[test]
    fn a_restart_cuts_an_incomplete_last_line_names_it_and_continues() {
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        for key in [None, Some(&key)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let torn = torn(&path, key, 3, 50);
            let fragment = &torn[torn.iter().rposition(|b| *b == b'\n').unwrap() + 1..];
            assert_eq!(
                verify(&[&path], key, None)
                    .unwrap()
                    .incomplete
                    .map(|i| i.line),
                Some(3)
            );

            write(&path, key, 4, 4);
            let file = lines(&path);
            assert_eq!(file.len(), 4, "{file:#?}");
            let note: Value = serde_json::from_str(&file[2]).unwrap();
            assert_eq!(note["event"], "incomplete_line_cut");
            assert_eq!(note["bytes"], fragment.len());
            assert_eq!(
                note["sha256"],
                format!("sha256:{}", hex(&Sha256::digest(fragment)))
            );
            assert_eq!(note["seq"], 3);
            let checked = verify(&[&path], key, None).unwrap();
            assert_eq!(checked.problem, None, "{file:#?}");
            assert_eq!((checked.records, checked.last_seq), (4, Some(4)));
            assert_eq!(checked.incomplete, None);
            assert_eq!(
                checked
                    .lines_cut
                    .iter()
                    .map(|cut| (cut.seq, cut.bytes, cut.line))
                    .collect::<Vec<_>>(),
                [(3, fragment.len() as u64, 3)]
            );
        }
    }

    /// Red-team finding: a power loss can leave zeros where the last writes' data never reached the disk though the
    /// file's length did (ext4's or XFS's delayed allocation): NUL bytes to the end, after the last record's
    /// newline or in the middle of a line. The verifier called such a file tampered with (`not_a_record`) and the
    /// server refused to start on it until someone edited it by hand. A run of NUL bytes to the end of the file is
    /// taken as a write cut short, with what precedes it on its line: reported incomplete, and cut at the restart,
    /// named like any fragment.
    #[test]
    fn a_tail_of_zeros_a_power_loss_leaves_is_a_write_cut_short() {
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        for key in [None, Some(&key)] {
            for (half_line, zeros) in [(false, 8), (true, 4096)] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("audit.jsonl");
                write(&path, key, 1, 3);
                let mut bytes = std::fs::read(&path).unwrap();
                let whole = bytes.len();
                if half_line {
                    // The last record's second half, its newline included, never reached the disk.
                    let last = bytes[..whole - 1]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .unwrap()
                        + 1;
                    bytes.truncate(last + (whole - last) / 2);
                }
                let kept = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
                bytes.resize(bytes.len() + zeros, 0);
                std::fs::write(&path, &bytes).unwrap();
                let checked = verify(&[&path], key, None).unwrap();
                assert_eq!(checked.problem, None, "{half_line} {zeros}: {checked:?}");
                assert!(checked.incomplete.is_some(), "{checked:?}");
                assert_eq!(checked.records, if half_line { 2 } else { 3 });

                write(&path, key, 4, 4);
                let after = std::fs::read(&path).unwrap();
                assert_eq!(&after[..kept], &bytes[..kept]);
                assert!(!after.contains(&0), "the zeros were cut");
                let lines_kept = bytes[..kept].iter().filter(|b| **b == b'\n').count();
                let note: Value = serde_json::from_str(&lines(&path)[lines_kept]).unwrap();
                assert_eq!(note["event"], "incomplete_line_cut");
                assert_eq!(note["bytes"], bytes.len() - kept);
                let checked = verify(&[&path], key, None).unwrap();
                assert_eq!(checked.problem, None, "{checked:?}");
                assert_eq!(checked.incomplete, None);
                assert_eq!(checked.lines_cut.len(), 1);
            }
        }
        // Zeros after something that is no write cut short (a whole object, not a record of the chain) are not cut:
        // refused as before.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"forged\":true}\0\0\0\0");
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify(&[&path], None, None).unwrap().problem.is_some());
        assert!(ChainedFileSink::append_to(&path, None).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    /// Red-team finding (against the zeros' fix): a power loss during a file's first record (a new deployment, or
    /// the first record after a rotation and restart) left a file holding only that record's start, or only zeros,
    /// and the server refused to start on it ("its last line is not a chained record") while the verifier called it
    /// incomplete. A file holding nothing but the start of a record as the sink writes one (`{"ts":"...`), or zeros,
    /// is a write cut short too: cut at the restart and named, the chain starting (or going on from `FILE.1`) as if
    /// the file were empty. A file of anything else is left alone and refused as before.
    #[test]
    fn a_first_record_cut_short_does_not_stop_the_start() {
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        for key in [None, Some(&key)] {
            // The start of a record as the sink writes one.
            let dir = tempfile::tempdir().unwrap();
            let sample = dir.path().join("sample.jsonl");
            write(&sample, key, 1, 1);
            let record = std::fs::read(&sample).unwrap();
            for (rotated, tail) in [
                (false, vec![0u8; 500]),
                (
                    false,
                    [&record[..record.len() / 2], &[0u8; 300][..]].concat(),
                ),
                (false, record[..record.len() / 2].to_vec()),
                (
                    true,
                    [&record[..record.len() / 2], &[0u8; 300][..]].concat(),
                ),
            ] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("audit.jsonl");
                let previous = dir.path().join("audit.jsonl.1");
                if rotated {
                    write(&previous, key, 1, 3);
                }
                std::fs::write(&path, &tail).unwrap();
                let files: Vec<&Path> = if rotated {
                    vec![&previous, &path]
                } else {
                    vec![&path]
                };
                let checked = verify(&files, key, None).unwrap();
                assert_eq!(checked.problem, None, "{checked:?}");
                assert!(checked.incomplete.is_some(), "{checked:?}");
                let first = if rotated { 4 } else { 1 };
                write(&path, key, first, first);
                let after = lines(&path);
                let note: Value = serde_json::from_str(&after[0]).unwrap();
                assert_eq!(note["event"], "incomplete_line_cut", "{after:#?}");
                assert_eq!(note["bytes"], tail.len());
                let checked = verify(&files, key, None).unwrap();
                assert_eq!(checked.problem, None, "{checked:?}");
                assert_eq!(checked.last_seq, Some(if rotated { 5 } else { 2 }));
                // The note the sink wrote first, cut short in turn (a crash during the recovery's own write: red-team
                // finding, the start was refused): its start is the sink's too.
                let note = after[0].as_bytes();
                for cut in (2..note.len()).step_by(11) {
                    let again = tempfile::tempdir().unwrap();
                    let torn = again.path().join("audit.jsonl");
                    std::fs::write(&torn, &note[..cut]).unwrap();
                    write(&torn, key, 1, 1);
                    let note: Value = serde_json::from_str(&lines(&torn)[0]).unwrap();
                    assert_eq!(note["event"], "incomplete_line_cut", "{cut}");
                    assert_eq!(note["bytes"], cut);
                }
            }
        }
        // Anything else alone in the file (a JSON text cut short that is no record's start) is not cut; nor is
        // another program's text that begins as a record does (red-team finding: cut, as any single line beginning
        // `{"ts":"` was): a record's start is its time stamp, then `"server_id"`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for other in [
            b"{\"config\": tru".to_vec(),
            b"{\"ts\":\"2026-01-01T00:00:00Z\",\"app\":\"billing\",\"rows\":[1,2,3".to_vec(),
            b"{\"ts\":\"\xff\xfe garbage".to_vec(),
            [&b"{\"ts\":\""[..], &b"9".repeat(900_000)].concat(),
        ] {
            std::fs::write(&path, &other).unwrap();
            assert!(ChainedFileSink::append_to(&path, None).is_err());
            assert_eq!(std::fs::read(&path).unwrap(), other);
        }
    }

    /// Red-team finding: a FIFO at `FILE.1` held the server's start for ever (it was opened to be continued,
    /// waiting for a writer). `FILE.1` is opened without waiting, and anything but a regular file there (a FIFO, a
    /// device, a directory) stops the start with a message naming it, as one that cannot be read does, rather than
    /// the chain starting afresh beside it.
    #[cfg(unix)]
    #[test]
    fn a_rotated_file_that_is_no_regular_file_stops_the_start_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let name = std::ffi::CString::new(rotated.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let (done, opened) = std::sync::mpsc::channel();
        let opening = path.clone();
        std::thread::spawn(move || {
            let _ = done.send(
                ChainedFileSink::append_to(&opening, None)
                    .err()
                    .map(|e| e.to_string()),
            );
        });
        let refused = opened
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the start waited for a writer")
            .expect("refused");
        assert!(
            refused.contains("audit.jsonl.1") && refused.contains("not a regular file"),
            "{refused}"
        );
        std::fs::remove_file(&rotated).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &rotated).unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("not a regular file"), "{refused}");
        // A link to nothing is no absent file (red-team finding: the chain began afresh beside it).
        std::fs::remove_file(&rotated).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), &rotated).unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("audit.jsonl.1"), "{refused}");
    }

    /// A red team's (round four): one blank line after a record (which the server, restarted, chains on after, and
    /// which reads as an accident) made the verifier stop there, so every later edit went unreported. Past a line
    /// that is not a record, the chain is checked on from the record before it: the first problem is the line, and
    /// the first after it is reported too.
    /// A third round's false refusal: a new file's first write cut short (a power loss), then a rotation before the
    /// restart, left `FILE.1` holding only the fragment and the chain in `FILE.2`: the start was refused, naming
    /// `FILE.2` as a copy the chain is not continued from. A rotated file holding only a write cut short is passed
    /// over as an empty one is, its fragment cut, and the chain goes on from `FILE.2`.
    #[test]
    fn a_rotated_file_holding_only_a_write_cut_short_is_passed_over() {
        for key in [None, Some(ChainKey::from_bytes(&[7; 32]).unwrap())] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            write(&path, key.as_ref(), 1, 5);
            std::fs::rename(&path, rotated_name_k(&path, 2)).unwrap();
            std::fs::write(rotated_name_k(&path, 1), b"{\"ts\":\"2026-12-0").unwrap();
            write(&path, key.as_ref(), 6, 6);
            let set = [
                rotated_name_k(&path, 2),
                rotated_name_k(&path, 1),
                path.clone(),
            ];
            let checked = verify(&set, key.as_ref(), None).unwrap();
            assert_eq!(checked.problem, None, "{checked:?}");
            assert_eq!(checked.last_seq, Some(7), "{checked:?}");
            assert!(std::fs::read(rotated_name_k(&path, 1)).unwrap().is_empty());
            let cut: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
            assert_eq!(cut["event"], "incomplete_line_cut", "{cut}");
        }
        // With checkpoints: the chain goes on, every record vouched for.
        let signer = CheckpointKey::from_seed([9; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_checkpointed(&path, &signer, 1, 5);
        std::fs::rename(&path, rotated_name_k(&path, 2)).unwrap();
        std::fs::write(rotated_name_k(&path, 1), b"{\"ts\":\"2026-12-0").unwrap();
        write_checkpointed(&path, &signer, 6, 6);
        let set = [
            rotated_name_k(&path, 2),
            rotated_name_k(&path, 1),
            path.clone(),
        ];
        let checked = verify(&set, None, Some(&public_key(dir.path(), &signer))).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert!(
            checked.unvouched.is_empty() && checked.ends_clean,
            "{checked:?}"
        );
    }

    /// A third round's false refusal: a power loss that kept a record but not its newline, the rest of the page
    /// zeros (the lost page beginning at the newline), refused the start. The zeros are cut as a write cut short
    /// is, named by an `incomplete_line_cut` record, and the next record starts on a line of its own.
    #[test]
    fn a_record_kept_without_its_newline_then_zeros_is_continued() {
        for key in [None, Some(ChainKey::from_bytes(&[7; 32]).unwrap())] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            write(&path, key.as_ref(), 1, 3);
            let mut bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.pop(), Some(b'\n'));
            bytes.extend_from_slice(&[0; 300]);
            std::fs::write(&path, &bytes).unwrap();
            write(&path, key.as_ref(), 4, 4);
            let checked = verify(&[&path], key.as_ref(), None).unwrap();
            assert_eq!(checked.problem, None, "{checked:?}");
            assert_eq!((checked.records, checked.last_seq), (5, Some(5)));
            let all = lines(&path);
            let cut: Value = serde_json::from_str(&all[3]).unwrap();
            assert_eq!(
                (cut["event"].as_str(), cut["bytes"].as_u64()),
                (Some("incomplete_line_cut"), Some(300))
            );
        }
    }

    /// The chain a restart reads from its file: lines that are not blank, each following the one before as it
    /// states it, across buffer ends, the last with or without its newline; anything else, none.
    #[test]
    fn a_restart_reads_the_chain_its_lines_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 4);
        let genuine = lines(&path);
        let links = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let mut file = File::open(&path).unwrap();
            chain_links(&mut file, text.len() as u64, "hash")
                .unwrap()
                .map(|(first, _, last)| (first, last))
        };
        assert_eq!(links(""), None);
        assert_eq!(links("\n \t\n"), None);
        assert_eq!(links(&(genuine.join("\n") + "\n")), Some((1, 4)));
        assert_eq!(links(&genuine.join("\n\n  \n")), Some((1, 4)));
        assert_eq!(links(&genuine[1..].join("\n")), Some((2, 4)));
        // A copy, a record of another chain, a line that is no record.
        let mut copied = genuine.clone();
        copied.push(genuine[3].clone());
        assert_eq!(links(&copied.join("\n")), None);
        let other = dir.path().join("other.jsonl");
        write(&other, None, 1, 6);
        let mut foreign = genuine.clone();
        foreign.push(lines(&other)[4].clone());
        assert_eq!(links(&foreign.join("\n")), None);
        assert_eq!(links(&(genuine.join("\n") + "\nnot a record\n")), None);
        // A line across the 1 MiB buffer's end: a record with a long member.
        let long = dir.path().join("long.jsonl");
        let sink = ChainedFileSink::append_to(&long, None).unwrap();
        sink.write(&record(1)).unwrap();
        let mut big = record(2);
        if let AuditEvent::ServerStop { reason, .. } = &mut big.event {
            *reason = "x".repeat((1 << 20) - 300);
        }
        sink.write(&big).unwrap();
        sink.write(&record(3)).unwrap();
        drop(sink);
        let text = std::fs::read_to_string(&long).unwrap();
        let expected = text.lines().count() as u64;
        assert!(text.len() > 1 << 20 && expected == 3, "{}", text.len());
        std::fs::write(&path, &text).unwrap();
        let mut file = File::open(&path).unwrap();
        let found = chain_links(&mut file, text.len() as u64, "hash").unwrap();
        assert_eq!(
            found.map(|(first, _, last)| (first, last)),
            Some((1, expected))
        );
    }

    /// A chain round's: any first problem but a stray line stopped the check, so a decoy (a copy of an earlier
    /// record, a byte flipped in one) named first hid a removal after it. Past the first problem of any kind, the
    /// numbering is checked on to the first record no line of the files holds, reported as `later`; records moved
    /// or copied are no gap, and nothing is reported past a clean end.
    #[test]
    fn a_decoy_hides_no_removal_after_it() {
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, Some(&key), 1, 12);
        let original = lines(&path);
        let without_9: Vec<String> = original
            .iter()
            .filter(|line| !line.contains("\"seq\":9,"))
            .cloned()
            .collect();
        let check = |lines: &[String]| {
            put(&path, lines);
            verify(&[&path], Some(&key), None).unwrap()
        };
        // A copy of record 2 after record 4.
        let mut copied = without_9.clone();
        copied.insert(4, original[1].clone());
        let checked = check(&copied);
        assert!(
            matches!(checked.problem, Some(Problem::OutOfOrder { seq: 2, .. })),
            "{checked:?}"
        );
        assert!(
            matches!(
                checked.later,
                Some(Problem::Removed {
                    seq: 9,
                    last: 9,
                    ..
                })
            ),
            "{checked:?}"
        );
        // A byte flipped in record 3.
        let mut flipped = without_9.clone();
        flipped[2] = flipped[2].replace("\"r3\"", "\"r7\"");
        let checked = check(&flipped);
        assert!(
            matches!(checked.problem, Some(Problem::Altered { seq: 3, .. })),
            "{checked:?}"
        );
        assert!(
            matches!(checked.later, Some(Problem::Removed { seq: 9, .. })),
            "{checked:?}"
        );
        // Decoys alone (a copy, a swap, a record moved later or earlier): no removal.
        let mut only_copied = original.clone();
        only_copied.insert(4, original[1].clone());
        let mut swapped = original.clone();
        swapped.swap(4, 5);
        let mut moved_later = original.clone();
        let moved = moved_later.remove(4);
        moved_later.push(moved);
        let mut moved_earlier = original.clone();
        let moved = moved_earlier.remove(8);
        moved_earlier.insert(2, moved);
        for decoys in [only_copied, swapped, moved_later, moved_earlier] {
            let checked = check(&decoys);
            assert!(checked.problem.is_some(), "{checked:?}");
            assert_eq!(checked.later, None, "{checked:?}");
        }
        // Record 5 removed and 6 moved to the end: record 5 alone was removed (a chain round's said 5 to 6).
        let mut removed_and_moved: Vec<String> = original.clone();
        let six = removed_and_moved.remove(5);
        removed_and_moved.remove(4);
        removed_and_moved.push(six);
        let checked = check(&removed_and_moved);
        assert!(
            matches!(
                checked.problem,
                Some(Problem::Removed {
                    seq: 5,
                    last: 5,
                    ..
                })
            ),
            "{checked:?}"
        );
        // A second round's: a copy of a later record as the decoy; records 5 and 7 removed with 6 moved to the end;
        // an unsealed stand-in for the removed record; an altered `seq`; a head cut off.
        let mut later_copy = without_9.clone();
        later_copy.insert(2, original[10].clone());
        let checked = check(&later_copy);
        assert!(
            matches!(
                checked.later,
                Some(Problem::Removed {
                    seq: 9,
                    last: 9,
                    ..
                })
            ),
            "{checked:?}"
        );
        let mut split: Vec<String> = original
            .iter()
            .filter(|line| !line.contains("\"seq\":5,") && !line.contains("\"seq\":7,"))
            .filter(|line| !line.contains("\"seq\":6,"))
            .cloned()
            .collect();
        split.push(original[5].clone());
        let checked = check(&split);
        assert!(
            matches!(
                checked.problem,
                Some(Problem::Removed {
                    seq: 5,
                    last: 5,
                    ..
                })
            ),
            "{checked:?}"
        );
        assert!(
            matches!(
                checked.later,
                Some(Problem::Removed {
                    seq: 7,
                    last: 7,
                    ..
                })
            ),
            "{checked:?}"
        );
        let mut stand_in = copied.clone();
        let at = stand_in
            .iter()
            .position(|line| line.contains("\"seq\":10,"))
            .unwrap();
        stand_in.insert(at, "{\"seq\":9}".into());
        let checked = check(&stand_in);
        // Not a record of the chain, where record 9 was due: named altered, not taken for it.
        assert!(
            matches!(checked.later, Some(Problem::Altered { seq: 9, .. })),
            "{checked:?}"
        );
        // A second record altered after a first problem: altered, not removed.
        let mut two_altered = copied.clone();
        let at = two_altered
            .iter()
            .position(|line| line.contains("\"seq\":8,"))
            .unwrap();
        two_altered[at] = two_altered[at].replace("\"r8\"", "\"r0\"");
        let checked = check(&two_altered);
        assert!(
            matches!(checked.later, Some(Problem::Altered { seq: 8, .. })),
            "{checked:?}"
        );
        let mut renumbered = original.clone();
        renumbered[4] = renumbered[4].replace("\"seq\":5,", "\"seq\":4,");
        let checked = check(&renumbered);
        assert!(
            matches!(checked.problem, Some(Problem::Altered { seq: 5, .. })),
            "{checked:?}"
        );
        assert_eq!(checked.later, None, "{checked:?}");
        let headless: Vec<String> = without_9[3..].to_vec();
        let checked = check(&headless);
        assert!(
            matches!(
                checked.problem,
                Some(Problem::HeadMissing { first_seq: 4, .. })
            ),
            "{checked:?}"
        );
        assert!(
            matches!(checked.later, Some(Problem::Removed { seq: 9, .. })),
            "{checked:?}"
        );
        // A third round's: a record moved past a line longer than any record was reported removed.
        let mut past_long = original.clone();
        let moved = past_long.remove(2);
        past_long.push("x".repeat(MAX_LINE + 10));
        past_long.push(moved);
        let checked = check(&past_long);
        assert!(
            matches!(
                checked.problem,
                Some(Problem::OutOfOrder {
                    seq: 4,
                    expected: 3,
                    ..
                })
            ),
            "{checked:?}"
        );
        assert_eq!(checked.later, None, "{checked:?}");
        // Records 1 and 2 swapped: record 1 is out of place, not the head missing.
        let mut head_swapped = original.clone();
        head_swapped.swap(0, 1);
        let checked = check(&head_swapped);
        assert!(
            matches!(
                checked.problem,
                Some(Problem::OutOfOrder {
                    seq: 2,
                    expected: 1,
                    ..
                })
            ),
            "{checked:?}"
        );
        // A removal after a removal is the later problem.
        let twice: Vec<String> = without_9
            .iter()
            .filter(|line| !line.contains("\"seq\":4,"))
            .cloned()
            .collect();
        let checked = check(&twice);
        assert!(
            matches!(checked.problem, Some(Problem::Removed { seq: 4, .. })),
            "{checked:?}"
        );
        assert!(
            matches!(checked.later, Some(Problem::Removed { seq: 9, .. })),
            "{checked:?}"
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_hides_no_later_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        write(&path, Some(&key), 1, 6);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        write(&path, Some(&key), 7, 12);
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert!(
            matches!(
                checked.problem,
                Some(Problem::NotARecord {
                    after: 6,
                    line: 7,
                    ..
                })
            ),
            "{checked:?}"
        );
        assert_eq!(checked.later, None, "{checked:?}");
        assert_eq!(
            checked.last_seq,
            Some(12),
            "checked on to the end: {checked:?}"
        );
        // Records 9 and 10 removed after the blank line: reported.
        let all = lines(&path);
        let kept: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|line| !line.contains("\"seq\":9,") && !line.contains("\"seq\":10,"))
            .collect();
        assert_eq!(kept.len(), all.len() - 2);
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert!(
            matches!(checked.problem, Some(Problem::NotARecord { line: 7, .. })),
            "{checked:?}"
        );
        assert!(
            matches!(
                checked.later,
                Some(Problem::Removed {
                    seq: 9,
                    last: 10,
                    ..
                })
            ),
            "{checked:?}"
        );
        assert_eq!(checked.strays, 1);
    }

    /// A third round's: a line longer than any record put first still stopped the check there, hiding a removal
    /// after it, and lines after the final checkpoint of a clean stop left the chain said to end with it. A line
    /// too long is passed over like any line that is not a record, and one after the last checkpoint means the
    /// files do not end clean.
    #[test]
    fn a_long_line_stops_no_check_and_a_stray_after_the_end_is_no_clean_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        write(&path, Some(&key), 1, 6);
        let all = lines(&path);
        let mut text = vec![" ".repeat(MAX_LINE + 1)];
        text.extend(
            all.iter()
                .enumerate()
                .filter(|(i, _)| *i != 3)
                .map(|(_, l)| l.clone()),
        );
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert!(
            matches!(checked.problem, Some(Problem::LineTooLong { line: 1, .. })),
            "{checked:?}"
        );
        assert!(
            matches!(checked.later, Some(Problem::Removed { seq: 4, .. })),
            "{checked:?}"
        );
        assert_eq!(checked.strays, 1);
        // A clean stop with its signed checkpoint, then a line that is not a record.
        let public = CheckpointKey::from_seed([5; 32]);
        let clean = dir.path().join("clean.jsonl");
        let sink = ChainedFileSink::append_to(&clean, Some(key.clone()))
            .unwrap()
            .with_checkpoints(
                Checkpoints {
                    key: public.clone(),
                    interval: std::time::Duration::from_secs(3600),
                },
                "test",
            );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let intact = verify(&[&clean], Some(&key), Some(&public.public_key())).unwrap();
        assert!(intact.problem.is_none() && intact.ends_clean, "{intact:?}");
        let mut bytes = std::fs::read(&clean).unwrap();
        bytes.extend_from_slice(b"{\"event\":\"tool_call\",\"tool\":\"delete_all\"}\n");
        std::fs::write(&clean, bytes).unwrap();
        let checked = verify(&[&clean], Some(&key), Some(&public.public_key())).unwrap();
        assert!(
            checked.problem.is_some() && !checked.ends_clean,
            "{checked:?}"
        );
    }

    /// A second round's: past the first line that is not a record, the others went unreported (two forged lines, one
    /// sealed without the key, one with a member twice, behind a blank line, which JSON readers take as records), and
    /// a line sealed the other way before the first record stopped the check there as "another mode", hiding a
    /// removal after it. Every such line is counted and the first 100 named; a file whose every line is of the other
    /// mode is still that.
    #[test]
    fn every_line_that_is_not_a_record_is_counted_and_none_stops_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        write(&path, Some(&key), 1, 6);
        let all = lines(&path);
        let forged_twice = all[4].replacen("\"event\":", "\"event\":\"x\",\"event\":", 1);
        let unkeyed = dir.path().join("unkeyed.jsonl");
        write(&unkeyed, None, 1, 1);
        let other_mode = lines(&unkeyed)[0].clone();
        let mut text: Vec<String> = vec![other_mode];
        text.extend(all[..4].iter().cloned());
        text.push(String::new());
        text.push(forged_twice);
        text.extend(all[5..].iter().cloned());
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert!(
            matches!(
                checked.problem,
                Some(Problem::NotARecord {
                    after: 0,
                    line: 1,
                    ..
                })
            ),
            "{checked:?}"
        );
        // Record 5's line is no record (a member twice): after the strays, it is missing.
        assert!(
            matches!(checked.later, Some(Problem::Removed { seq: 5, .. })),
            "{checked:?}"
        );
        assert_eq!(checked.strays, 3, "{checked:?}");
        let at: Vec<u64> = checked.stray_lines.iter().map(|s| s.line).collect();
        assert_eq!(at, [1, 6, 7]);
        // A whole file of the other mode is what it was.
        let checked = verify(&[&unkeyed], Some(&key), None).unwrap();
        assert!(
            matches!(
                checked.problem,
                Some(Problem::WrongMode { keyed: false, .. })
            ),
            "{checked:?}"
        );
    }

    /// Red-team finding: a file holding only blank lines (what `echo > FILE` leaves) was taken for an empty one, and
    /// the chain written after the blanks never verified (`not_a_record` at line 1: the server writes no blank
    /// line). Such a file stops the start, untouched, with a message saying how to empty it.
    #[test]
    fn a_file_of_blank_lines_only_stops_the_start() {
        for blanks in ["\n", "\n\n", "   \n", "   ", " \t\n"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            std::fs::write(&path, blanks).unwrap();
            let refused = ChainedFileSink::append_to(&path, None)
                .err()
                .unwrap_or_else(|| panic!("{blanks:?} was taken"))
                .to_string();
            assert!(refused.contains("blank"), "{refused}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), blanks);
        }
    }

    /// Review finding: the fragment was cut as the file was opened, and named only with the first record after:
    /// a server failing to start in between (a port taken, a setting refused) left the file cut with nothing naming
    /// the cut. It is cut only as the first line is written now; a sink that writes nothing leaves the file as it was.
    #[test]
    fn a_sink_that_writes_nothing_leaves_an_incomplete_last_line_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let torn = torn(&path, None, 2, 30);
        drop(ChainedFileSink::append_to(&path, None).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        write(&path, None, 3, 3);
        let checked = verify(&[&path], None, None).unwrap();
        assert_eq!(checked.problem, None);
        assert_eq!(checked.lines_cut.len(), 1);
    }

    /// A re-read's finding: the fragment's record written after the cut could fail, and the fragment was then named
    /// by nothing (or every later write refused, its length having changed). It stays pending until its record is
    /// written, and is cut once.
    #[test]
    fn a_cut_whose_record_could_not_be_written_is_named_with_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let kept = torn(&path, None, 2, 30)
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap()
            + 1;
        let sink = ChainedFileSink::append_to(&path, None).unwrap();
        sink.lock().fail.append = true;
        assert!(sink.write(&record(3)).is_err());
        assert_eq!(std::fs::read(&path).unwrap().len(), kept);
        sink.lock().fail.append = false;
        sink.write(&record(3)).unwrap();
        let checked = verify(&[&path], None, None).unwrap();
        assert_eq!(checked.problem, None, "{:#?}", lines(&path));
        assert_eq!((checked.records, checked.lines_cut.len()), (3, 1));
    }

    /// Review finding: with checkpoints, the cut was named before the `chain_resumed` record, which then counted
    /// the sink's own record among those no checkpoint vouches for. The resumption comes first now, and names only
    /// the records the crash left unsigned.
    #[test]
    fn a_cut_after_a_crash_with_checkpoints_names_only_the_unsigned_records_unvouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = CheckpointKey::from_seed([5; 32]);
        let public = CheckpointPublicKey(key.0.verifying_key());
        {
            let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &key);
            for n in 1..=2 {
                sink.write(&record(n)).unwrap(); // `server_stop` records: each followed by a checkpoint
            }
        }
        // The crash tears the last checkpoint: record 3 (the second stop) is left unsigned.
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 40]).unwrap();
        {
            let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &key);
            sink.write(&record(3)).unwrap();
        }
        let events: Vec<String> = lines(&path)
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"].to_string())
            .collect();
        assert_eq!(
            events[3..],
            [
                "\"chain_resumed\"",
                "\"incomplete_line_cut\"",
                "\"server_stop\"",
                "\"checkpoint\""
            ],
            "{events:?}"
        );
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(checked.problem, None, "{:#?}", lines(&path));
        assert_eq!(
            checked
                .unvouched
                .iter()
                .map(|range| (range.from, range.to))
                .collect::<Vec<_>>(),
            [(3, 3)]
        );
        assert_eq!(checked.lines_cut.len(), 1);
    }

    /// A last record whole but for its newline is kept, and the next record starts on a line of its own (it was
    /// glued to it), the only record of a file too; a file that is no chain of this mode (one line, lines of
    /// something else, the other mode) is left untouched, its last line not cut, and refused as before.
    #[test]
    fn a_last_record_missing_only_its_newline_is_kept_and_no_other_file_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        for records in [1, 2] {
            let path = dir.path().join(format!("audit-{records}.jsonl"));
            torn(&path, None, records, 1);
            write(&path, None, records + 1, records + 1);
            let checked = verify(&[&path], None, None).unwrap();
            assert_eq!(checked.problem, None, "{:?}", lines(&path));
            assert_eq!((checked.records, checked.lines_cut.len()), (records + 1, 0));
        }

        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let keyed = dir.path().join("keyed.jsonl");
        write(&keyed, Some(&key), 1, 2);
        let mut torn_keyed = std::fs::read(&keyed).unwrap();
        torn_keyed.truncate(torn_keyed.len() - 20);
        for (name, text) in [
            ("lone.jsonl", b"{\"not\": \"a rec".to_vec()),
            ("text.txt", b"my notes\nthe last line".to_vec()),
            ("keyed.jsonl", torn_keyed),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            assert!(ChainedFileSink::append_to(&path, None).is_err(), "{name}");
            assert_eq!(std::fs::read(&path).unwrap(), text, "{name}");
        }
    }

    /// Operator's trial: a keyed chain verified without its key was "not a chained record" (exit 1, as for
    /// tampering), and an unkeyed one with a key the same; the verifier now says which mode the chain is in. A file
    /// that cannot be read is named.
    #[test]
    fn a_chain_verified_in_the_other_mode_is_told_so_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let keyed = dir.path().join("keyed.jsonl");
        write(&keyed, Some(&key), 1, 2);
        let unkeyed = dir.path().join("unkeyed.jsonl");
        write(&unkeyed, None, 1, 2);
        let problem = verify(&[&keyed], None, None).unwrap().problem;
        assert!(
            matches!(problem, Some(Problem::WrongMode { keyed: true, .. })),
            "{problem:?}"
        );
        assert!(problem.unwrap().to_string().contains("--key-file"));
        let problem = verify(&[&unkeyed], Some(&key), None).unwrap().problem;
        assert!(
            matches!(problem, Some(Problem::WrongMode { keyed: false, .. })),
            "{problem:?}"
        );
        // Not a hint to drop the key: an unkeyed chain is what a forger without the key makes.
        assert!(!problem.unwrap().to_string().contains("without --key-file"));
        let missing = dir.path().join("missing.jsonl");
        let error = verify(&[&keyed, &missing], Some(&key), None).unwrap_err();
        assert!(error.to_string().contains("missing.jsonl"), "{error}");
        let error = ChainKey::read(dir.path().join("no.key")).err().unwrap();
        assert!(error.to_string().contains("no.key"), "{error}");
    }

    #[test]
    fn a_chain_continues_across_restarts_and_each_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 3);
        write(&path, None, 4, 6); // a restart
        let clean = verify(&[&path], None, None).unwrap();
        assert_eq!(clean.problem, None);
        assert_eq!((clean.records, clean.last_seq), (6, Some(6)));
        let original = lines(&path);

        let mut edited = original.clone();
        edited[2] = edited[2].replace("\"r3\"", "\"r4\"");
        put(&path, &edited);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::Altered { seq: 3, .. })
        ));

        let mut deleted = original.clone();
        deleted.remove(3);
        put(&path, &deleted);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::Removed {
                seq: 4,
                last: 4,
                ..
            })
        ));
        // Several in a row: the whole gap is named (the first was, alone, in the auditor's trial).
        let mut cut = original.clone();
        cut.drain(1..4);
        put(&path, &cut);
        let problem = verify(&[&path], None, None).unwrap().problem.unwrap();
        assert!(
            matches!(
                problem,
                Problem::Removed {
                    seq: 2,
                    last: 4,
                    ..
                }
            ),
            "{problem:?}"
        );
        assert!(
            problem
                .to_string()
                .starts_with("records 2 to 4 were removed"),
            "{problem}"
        );

        let mut swapped = original.clone();
        swapped.swap(1, 2);
        put(&path, &swapped);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::OutOfOrder {
                seq: 3,
                expected: 2,
                ..
            })
        ));

        let mut garbage = original.clone();
        garbage.insert(4, "not json".into());
        put(&path, &garbage);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::NotARecord { after: 4, .. })
        ));
    }

    /// A red team's (chain round 48): a genuine earlier line appended after the last record (append access and a
    /// restart were enough) was continued from as the chain's head, forking the chain: `seq` went `1 .. 10 2 3 ..`,
    /// the verifier stopped at the copy, and nothing written after it was ever checked. A restart now continues
    /// only a last record that follows the record before it (the next `seq`, its `prev` that record's seal), in the
    /// file or in the rotated file it continues; otherwise it refuses, as for any other last line it cannot
    /// continue from. With a cut-short fragment after the copy too.
    #[test]
    fn a_copy_of_an_earlier_record_after_the_last_is_not_continued_from() {
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let signer = CheckpointKey::from_seed([9; 32]);
        let refused = |path: &Path, key: Option<&ChainKey>| {
            let error = ChainedFileSink::append_to(path, key.cloned())
                .err()
                .expect("a replayed record is not continued from");
            let shown = error.to_string();
            assert!(shown.contains("does not follow"), "{shown}");
        };
        for key in [None, Some(&key)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            write(&path, key, 1, 6);
            let original = lines(&path);
            // An ordinary record, and the file's first.
            for copied in [1, 0] {
                let mut replayed = original.clone();
                replayed.push(original[copied].clone());
                put(&path, &replayed);
                refused(&path, key);
            }
            // Two consecutive ones, which follow each other (a second round's).
            let mut replayed = original.clone();
            replayed.push(original[2].clone());
            replayed.push(original[3].clone());
            put(&path, &replayed);
            refused(&path, key);
            // With a blank line between: the same.
            let mut replayed = original.clone();
            replayed.push(String::new());
            replayed.push(original[2].clone());
            put(&path, &replayed);
            refused(&path, key);
            // The copy, then a write cut short after it.
            let mut replayed = original.clone();
            replayed.push(original[2].clone());
            std::fs::write(&path, replayed.join("\n") + "\n{\"ts\":\"2026").unwrap();
            refused(&path, key);
            // Untouched, the chain goes on.
            put(&path, &original);
            write(&path, key, 7, 7);
            assert_eq!(verify(&[&path], key, None).unwrap().problem, None);
            // In the rotated file a new (empty) file continues: one copy, or two.
            let rotated_path = dir.path().join("audit.jsonl.1");
            std::fs::rename(&path, &rotated_path).unwrap();
            let genuine = lines(&rotated_path);
            for copies in [3..4, 3..5] {
                let mut rotated = genuine.clone();
                rotated.extend_from_slice(&genuine[copies]);
                put(&rotated_path, &rotated);
                refused(&path, key);
            }
            put(&rotated_path, &genuine);
            // A copy as the new file's first line, after the rotation (a second round's): it does not follow
            // `FILE.1`'s last record.
            put(&path, &genuine[2..3]);
            let shown = ChainedFileSink::append_to(&path, key.cloned())
                .err()
                .expect("a copy opening the new file is not continued from")
                .to_string();
            assert!(shown.contains("FILE.1"), "{shown}");
            // Record 1 copied there (a third round's), or two consecutive records of another chain sealed the
            // same way appended to `FILE.1`.
            put(&path, &genuine[0..1]);
            let shown = ChainedFileSink::append_to(&path, key.cloned())
                .err()
                .expect("a copy of record 1 opening the new file is not continued from")
                .to_string();
            assert!(shown.contains("FILE.1"), "{shown}");
            std::fs::remove_file(&path).unwrap();
            let other = dir.path().join("other.jsonl");
            write(&other, key, 1, 12);
            let others = lines(&other);
            let mut foreign = genuine.clone();
            foreign.extend_from_slice(&others[7..9]);
            put(&rotated_path, &foreign);
            refused(&path, key);
            put(&rotated_path, &genuine);
            // The new file as the chain wrote it: continued, and restarted again.
            let _ = std::fs::remove_file(&path);
            write(&path, key, 8, 9);
            write(&path, key, 10, 10);
            let checked = verify(&[&rotated_path, &path], key, None).unwrap();
            assert_eq!((checked.problem, checked.records), (None, 10));
        }
        // A checkpoint copied after the last record.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_checkpointed(&path, &signer, 1, 4);
        write_checkpointed(&path, &signer, 5, 8);
        let original = lines(&path);
        let checkpoint = original
            .iter()
            .find(|line| line.contains("\"event\":\"checkpoint\""))
            .unwrap()
            .clone();
        let mut replayed = original.clone();
        replayed.push(checkpoint);
        put(&path, &replayed);
        let error = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("a replayed checkpoint is not continued from");
        assert!(error.to_string().contains("does not follow"), "{error}");
    }

    #[test]
    fn a_keyed_chain_cannot_be_rechained_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, Some(&key), 1, 4);
        assert_eq!(verify(&[&path], Some(&key), None).unwrap().problem, None);
        // A forger rewrites record 2 and re-chains everything after it, with a key of their own.
        let forged_key = ChainKey::from_bytes(&[9; 32]).unwrap();
        let forged = dir.path().join("forged.jsonl");
        write(&forged, Some(&forged_key), 1, 4);
        assert_eq!(
            verify(&[&forged], Some(&forged_key), None).unwrap().problem,
            None
        );
        assert!(matches!(
            verify(&[&forged], Some(&key), None).unwrap().problem,
            Some(Problem::Altered { seq: 1, .. })
        ));
        // An unkeyed chain is not a keyed one.
        let plain = dir.path().join("plain.jsonl");
        write(&plain, None, 1, 2);
        assert!(matches!(
            verify(&[&plain], Some(&key), None).unwrap().problem,
            Some(Problem::WrongMode { keyed: false, .. })
        ));
        // And a keyed file is not continued without its key, nor with another.
        assert!(ChainedFileSink::append_to(&path, None).is_err());
        let refused = ChainedFileSink::append_to(&path, Some(forged_key.clone()))
            .err()
            .expect("continued with another key");
        assert!(refused.to_string().contains("another key"), "{refused}");
        assert!(ChainedFileSink::append_to(&path, Some(key)).is_ok());
    }

    #[test]
    fn a_rotated_set_verifies_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 3);
        // Rotated out (`audit.jsonl.1`); the new file continues from its last record.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        write(&path, None, 4, 5);
        assert!(lines(&path)[0].contains("\"seq\":4"), "{:?}", lines(&path));
        let both = verify(&[&rotated, &path], None, None).unwrap();
        assert_eq!(
            (both.problem, both.records, both.last_seq),
            (None, 5, Some(5))
        );
        // The current file alone starts mid-chain: a head missing, unless the older files were removed on purpose.
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::HeadMissing { first_seq: 4, .. })
        ));
        let alone = verify_mid_chain(&[&path], None, None).unwrap();
        assert_eq!(
            (alone.problem, alone.first_seq, alone.last_seq),
            (None, Some(4), Some(5))
        );
        // In the wrong order, the set is not a chain either way.
        for check in [verify::<&PathBuf>, verify_mid_chain::<&PathBuf>] {
            assert!(
                check(&[&path, &rotated], None, None)
                    .unwrap()
                    .problem
                    .is_some()
            );
        }
    }

    #[test]
    fn a_head_cut_off_or_a_file_emptied_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 5);
        let original = lines(&path);
        put(&path, &original[2..]);
        let cut = verify(&[&path], None, None).unwrap();
        assert_eq!(
            (cut.problem, cut.records),
            (
                Some(Problem::HeadMissing {
                    first_seq: 3,
                    file: path.display().to_string(),
                    line: 1
                }),
                0
            )
        );
        // Emptied: nothing to check without checkpoints; with a checkpoint key, no checkpoint is a problem.
        std::fs::write(&path, "").unwrap();
        let empty = verify(&[&path], None, None).unwrap();
        assert_eq!((empty.problem, empty.records), (None, 0));
        let public_path = dir.path().join("key.pub");
        std::fs::write(&public_path, CheckpointKey::from_seed([3; 32]).public_hex()).unwrap();
        let public = CheckpointPublicKey::read(&public_path).unwrap();
        assert_eq!(
            verify(&[&path], None, Some(&public)).unwrap().problem,
            Some(Problem::NoCheckpoint)
        );
    }

    #[test]
    fn a_genuine_checkpoint_copied_before_forged_records_vouches_for_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = CheckpointKey::from_seed([3; 32]);
        let public_path = dir.path().join("key.pub");
        std::fs::write(&public_path, key.public_hex()).unwrap();
        let public = CheckpointPublicKey::read(&public_path).unwrap();
        let sink = ChainedFileSink::append_to(&path, None)
            .unwrap()
            .with_checkpoints(
                Checkpoints {
                    key,
                    interval: std::time::Duration::from_secs(3600),
                },
                "test",
            );
        for n in 1..=2 {
            sink.write(&record(n)).unwrap(); // each `server_stop` is followed by its checkpoint
        }
        drop(sink);
        let genuine = lines(&path);
        assert_eq!(genuine.len(), 4);
        assert_eq!(verify(&[&path], None, Some(&public)).unwrap().problem, None);
        // The forger keeps only the last genuine checkpoint and chains records of their own after it (an unkeyed
        // chain: anyone can), ending, like a clean stop, with a `server_stop`.
        let forged = dir.path().join("forged.jsonl");
        put(&forged, &genuine[3..]);
        write(&forged, None, 7, 8);
        assert!(matches!(
            verify(&[&forged], None, Some(&public)).unwrap().problem,
            Some(Problem::HeadMissing { first_seq: 4, .. })
        ));
        // Told that older records were removed on purpose, the verifier still vouches for none of the forged ones.
        let mid = verify_mid_chain(&[&forged], None, Some(&public)).unwrap();
        assert_eq!(
            (
                mid.problem,
                mid.checkpoints,
                mid.unsigned_tail,
                mid.ends_clean
            ),
            (None, 1, 2, false)
        );
    }

    #[test]
    fn checkpoints_vouch_for_records_only_when_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = ChainedFileSink::append_to(&path, None)
            .unwrap()
            .with_checkpoints(
                Checkpoints {
                    key: CheckpointKey::from_seed([3; 32]),
                    interval: std::time::Duration::from_secs(3600),
                },
                "test",
            );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let unverified = verify(&[&path], None, None).unwrap();
        assert_eq!(
            (
                unverified.problem,
                unverified.checkpoints,
                unverified.unsigned_tail
            ),
            (None, 1, 2)
        );
    }

    #[test]
    fn a_line_longer_than_any_record_is_reported_without_being_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let block = vec![b'x'; 1 << 16];
        for _ in 0..(2 * MAX_LINE / block.len()) {
            file.write_all(&block).unwrap();
        }
        drop(file);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::LineTooLong {
                after: 1,
                line: 2,
                ..
            })
        ));
        // A line just within the bound is read (and is not a record).
        let mut near = lines(&path)[..1].to_vec();
        near.push("y".repeat(MAX_LINE));
        put(&path, &near);
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::NotARecord {
                after: 1,
                line: 2,
                ..
            })
        ));
    }

    #[test]
    fn lines_are_read_one_at_a_time_within_their_bound() {
        let mut reader = io::BufReader::with_capacity(4, &b"ab\n\nlonger line\nlast"[..]);
        let mut line = Vec::new();
        let mut read = Vec::new();
        while let Some((fits, ended)) = read_line_ended(&mut reader, &mut line, 6).unwrap() {
            read.push((String::from_utf8(line.clone()).unwrap(), fits, ended));
            if !fits {
                // Told as soon as it is too long: the reader stops there.
                break;
            }
        }
        assert_eq!(
            read,
            [
                ("ab".to_owned(), true, true),
                (String::new(), true, true),
                (String::new(), false, false),
            ]
        );
        let mut reader = io::BufReader::with_capacity(4, &b"ab\nlast"[..]);
        assert_eq!(
            read_line_ended(&mut reader, &mut line, 6).unwrap(),
            Some((true, true))
        );
        assert_eq!(
            read_line_ended(&mut reader, &mut line, 6).unwrap(),
            Some((true, false))
        );
        assert_eq!(line, b"last");
        assert_eq!(read_line_ended(&mut reader, &mut line, 6).unwrap(), None);
    }

    #[test]
    fn a_quiet_spell_after_records_is_closed_by_a_timed_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = CheckpointKey::from_seed([3; 32]);
        let public = dir.path().join("key.pub");
        std::fs::write(&public, key.public_hex()).unwrap();
        let sink = ChainedFileSink::append_to(&path, None)
            .unwrap()
            .with_checkpoints(
                Checkpoints {
                    key,
                    interval: std::time::Duration::from_millis(100),
                },
                "test",
            );
        // Records other than `server_stop` (which a checkpoint always follows).
        for count in [1, 2] {
            let mut quiet = record(count);
            quiet.event = AuditEvent::AuditSuppressed {
                suppressed_event: "http_rejected",
                count,
                reasons: [("missing_token", count)].into(),
            };
            sink.write(&quiet).unwrap();
        }
        assert_eq!(lines(&path).len(), 2);
        let started = std::time::Instant::now();
        while lines(&path).len() < 3 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no timed checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(lines(&path)[2].contains("\"event\":\"checkpoint\""));
        let public = CheckpointPublicKey::read(&public).unwrap();
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(
            (checked.problem, checked.checkpoints, checked.unsigned_tail),
            (None, 1, 0)
        );
        // Nothing new: no more checkpoints.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(lines(&path).len(), 3);
    }

    /// The public half of the test checkpoint key, read as a verifier would.
    fn public_key(dir: &Path, key: &CheckpointKey) -> CheckpointPublicKey {
        let path = dir.join("checkpoint.pub");
        std::fs::write(&path, key.public_hex()).unwrap();
        CheckpointPublicKey::read(&path).unwrap()
    }

    fn with_checkpoints(sink: ChainedFileSink, key: &CheckpointKey) -> ChainedFileSink {
        sink.with_checkpoints(
            Checkpoints {
                key: key.clone(),
                interval: std::time::Duration::from_secs(3600),
            },
            "test",
        )
    }

    /// Records `from..=to` written to `path` by a sink with checkpoints of `key` (each `server_stop` is followed by
    /// one), as a server's run leaves them.
    fn write_checkpointed(path: &Path, key: &CheckpointKey, from: u64, to: u64) {
        let sink = with_checkpoints(ChainedFileSink::append_to(path, None).unwrap(), key);
        for n in from..=to {
            sink.write(&record(n)).unwrap();
        }
    }

    /// The ranges of records a verification found vouched for by no checkpoint.
    fn unvouched_ranges(checked: &Verification) -> Vec<(u64, u64)> {
        checked
            .unvouched
            .iter()
            .map(|range| (range.from, range.to))
            .collect()
    }

    /// Red-team finding: with the genuine file moved to `FILE.1` and a forged one (a chain of its own from record 1,
    /// no checkpoint) put in its place, the restarted server took `FILE.1`'s last checkpoint as the one vouching for
    /// the forged file's records (its number was not past theirs), wrote no `chain_resumed`, and its next checkpoint
    /// signed the forgery: with `FILE.1` deleted, the file verified intact. A rotated file's checkpoint counts only
    /// for a file that continues it.
    #[test]
    fn a_rotated_files_checkpoint_vouches_only_for_a_file_that_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = CheckpointKey::from_seed([9; 32]);
        let public = CheckpointPublicKey(key.0.verifying_key());
        write_checkpointed(&path, &key, 1, 8);
        std::fs::rename(&path, rotated_name(&path)).unwrap();
        // The forgery: a chain of its own, as many records as the genuine file, no checkpoint.
        let forged = dir.path().join("forged.jsonl");
        write(&forged, None, 1, 16);
        std::fs::rename(&forged, &path).unwrap();
        // Not continued at all now (a third round's): a record 1 beside a `FILE.1` that holds records does not
        // follow it, so no checkpoint is written to seem to vouch for the forgery.
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("a chain begun afresh beside FILE.1 is not continued");
        assert!(refused.to_string().contains("FILE.1"), "{refused}");

        // A file that does continue `FILE.1` (a crash before its first checkpoint) is vouched for up to that file's
        // last checkpoint, and no further.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &key);
            sink.write(&record(1)).unwrap();
        }
        std::fs::rename(&path, rotated_name(&path)).unwrap();
        // Continued without checkpoints (as a crash before the first would leave it): records 3 and 4.
        write(&path, None, 2, 3);
        {
            let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &key);
            sink.write(&record(4)).unwrap();
        }
        let checked = verify(&[rotated_name(&path), path.clone()], None, Some(&public)).unwrap();
        assert_eq!(checked.problem, None, "{:#?}", lines(&path));
        assert_eq!(unvouched_ranges(&checked), [(3, 4)]);
    }

    /// Red-team finding: an audit log that was no regular file was taken: `/dev/null` (or a link to it) kept no
    /// record of 20 calls, the only message a warning that it was writable by everyone; a FIFO nothing read hung the
    /// server once its buffer filled. A chained log is a regular file: anything else stops the start, named.
    #[cfg(unix)]
    #[test]
    fn an_audit_log_that_is_no_regular_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("to-null.jsonl");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let fifo = dir.path().join("fifo.jsonl");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for path in [Path::new("/dev/null"), link.as_path(), fifo.as_path()] {
            let refused = ChainedFileSink::append_to(path, None)
                .err()
                .unwrap_or_else(|| panic!("{} was taken", path.display()));
            assert!(
                refused.to_string().contains("not a regular file"),
                "{}: {refused}",
                path.display()
            );
        }
        assert!(fifo.exists(), "the FIFO is left where it was");
    }

    /// Red-team finding (second round): a genuine checkpoint line copied into a forged file, anywhere, was taken as
    /// the file's last checkpoint (its number not past the last record's): no `chain_resumed`, the forgery signed at
    /// the next checkpoint, and with the copied line removed the file verified intact. The same through `FILE.1`:
    /// its stop checkpoint cut off (a crash's shape), a later checkpoint copied into it, and a forged file following
    /// its last record. A checkpoint counts only if the records after it link to it, up to the one continued.
    #[test]
    fn a_checkpoint_counts_only_if_the_records_after_it_link_to_it() {
        let key = CheckpointKey::from_seed([11; 32]);
        let public = CheckpointPublicKey(key.0.verifying_key());
        let checkpoint_lines = |path: &Path| -> Vec<String> {
            lines(path)
                .into_iter()
                .filter(|l| l.contains("\"event\":\"checkpoint\""))
                .collect()
        };
        let seq_of = |line: &str| serde_json::from_str::<Value>(line).unwrap()["seq"].as_u64();

        // Without rotation: a forged chain of its own, a genuine checkpoint line planted before its last line.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_checkpointed(&path, &key, 1, 6);
        let genuine = checkpoint_lines(&path).pop().unwrap();
        let genuine_seq = seq_of(&genuine).unwrap();
        let forged = dir.path().join("forged.jsonl");
        write(&forged, None, 1, genuine_seq);
        let mut planted = lines(&forged);
        let last = planted.pop().unwrap();
        planted.push(genuine.clone());
        planted.push(last);
        put(&path, &planted);
        // The last record does not follow the planted line: not continued from at all (a chain round's), so no
        // record is written after it to seem vouched for.
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("a last record after a planted line is not continued from");
        assert!(refused.to_string().contains("does not follow"), "{refused}");

        // Through `FILE.1`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_checkpointed(&path, &key, 1, 4);
        std::fs::rename(&path, rotated_name(&path)).unwrap();
        write_checkpointed(&path, &key, 5, 8);
        let later = checkpoint_lines(&path).pop().unwrap();
        // `FILE.1` without its stop checkpoint: it ends at record `end`.
        let mut rotated = lines(&rotated_name(&path));
        rotated.pop();
        let end = seq_of(rotated.last().unwrap()).unwrap();
        put(&rotated_name(&path), &rotated);
        // A forged file following `FILE.1`'s last record.
        let (end_seq, end_seal) =
            continued(&path, rotated.last().unwrap().as_bytes(), None).unwrap();
        assert_eq!(end_seq, end);
        std::fs::remove_file(&path).unwrap();
        {
            // Made as a file continuing `FILE.1` is, then moved aside while `FILE.1` gets its planted line.
            let sink = ChainedFileSink::append_to(&path, None).unwrap();
            for n in 0..6 {
                sink.write(&record(200 + n)).unwrap();
            }
        }
        let first: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(first["prev"], end_seal.as_str());
        let mut planted = rotated.clone();
        let last = planted.pop().unwrap();
        planted.push(later.clone());
        planted.push(last);
        put(&rotated_name(&path), &planted);
        {
            let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &key);
            sink.write(&record(300)).unwrap();
        }
        put(&rotated_name(&path), &rotated);
        let checked = verify(&[rotated_name(&path), path.clone()], None, Some(&public)).unwrap();
        let unvouched = unvouched_ranges(&checked);
        assert!(
            unvouched
                .iter()
                .any(|(from, to)| *from <= end + 1 && *to >= end + 6),
            "the forged records {}..={} are vouched for: {unvouched:?} {:#?}",
            end + 1,
            end + 6,
            lines(&path)
        );
    }

    /// Red-team finding: two rotations while no server ran (logrotate's default `ifempty`) left an empty `FILE.1`
    /// between the chain's last file, `FILE.2`, and the new file, which then began the chain afresh at record 1,
    /// silently: the set no longer verified. A new file continues the newest rotated file that holds a record.
    #[test]
    fn a_new_file_continues_the_newest_rotated_file_holding_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 4);
        let second = dir.path().join("audit.jsonl.2");
        std::fs::rename(&path, &second).unwrap();
        std::fs::write(rotated_name(&path), "").unwrap();
        write(&path, None, 5, 6);
        let first: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(first["seq"], 5, "{:#?}", lines(&path));
        let checked = verify(
            &[second.clone(), rotated_name(&path), path.clone()],
            None,
            None,
        )
        .unwrap();
        assert_eq!(checked.problem, None);
        assert_eq!(checked.records, 6);

        // Compressed where the chain's last record would be read: the start is refused, naming it, not begun afresh.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(rotated_name(&path), "").unwrap();
        std::fs::write(dir.path().join("audit.jsonl.2.gz"), b"\x1f\x8b").unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("refused");
        assert!(
            refused.to_string().contains("audit.jsonl.2.gz"),
            "{refused}"
        );
    }

    /// The attack: a line planted after the last record whose seal value closes the string and carries members of
    /// its own. A sink that took its `prev` from that line unchecked wrote them into its first record, sealed; with
    /// the planted line deleted afterwards, the file verified, keyed and checkpointed.
    #[test]
    fn a_planted_last_line_cannot_inject_members_into_the_next_record() {
        for keyed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let key = keyed.then(|| ChainKey::from_bytes(&[7; 32]).unwrap());
            let checkpoint = CheckpointKey::from_seed([3; 32]);
            let public = public_key(dir.path(), &checkpoint);
            let sink = with_checkpoints(
                ChainedFileSink::append_to(&path, key.clone()).unwrap(),
                &checkpoint,
            );
            sink.write(&record(1)).unwrap(); // and its checkpoint
            drop(sink);
            let genuine = lines(&path);
            let last: Value = serde_json::from_str(genuine.last().unwrap()).unwrap();
            let seal_name = if keyed { "mac" } else { "hash" };
            let (n, sealed) = (
                last["seq"].as_u64().unwrap(),
                last[seal_name].as_str().unwrap(),
            );
            let payload = format!(
                "{sealed}\",\"event\":\"tool_call\",\"tool\":\"delete_all\",\"caller\":\"alice\",\"outcome\":\"ok\",\"z\":\""
            );
            let value = serde_json::to_string(&payload).unwrap();
            // The seal's value holding `"`; the seal not the last member; a space after the line.
            for planted in [
                format!("{{\"seq\":{n},\"{seal_name}\":{value}}}"),
                format!("{{\"seq\":{n},\"{seal_name}\":{value},\"x\":1}}"),
                format!("{{\"seq\":{n},\"{seal_name}\":{value}}} "),
            ] {
                let mut with_planted = genuine.clone();
                with_planted.push(planted);
                put(&path, &with_planted);
                match ChainedFileSink::append_to(&path, key.clone()) {
                    Err(refused) => {
                        let message = refused.to_string();
                        assert!(
                            message.contains("its last line")
                                || message.contains("does not follow"),
                            "{message}"
                        );
                    }
                    Ok(sink) => {
                        let sink = with_checkpoints(sink, &checkpoint);
                        sink.write(&record(2)).unwrap();
                        drop(sink);
                        let mut cleaned = lines(&path);
                        cleaned.remove(genuine.len());
                        put(&path, &cleaned);
                        let checked = verify(&[&path], key.as_ref(), Some(&public)).unwrap();
                        panic!(
                            "keyed {keyed}: the sink continued from a planted line; verified: {checked:?}\n{}",
                            cleaned.join("\n")
                        );
                    }
                }
            }
            // The genuine file is still continued.
            put(&path, &genuine);
            assert!(ChainedFileSink::append_to(&path, key.clone()).is_ok());
        }
    }

    /// A red team's planted last record, sealed as the chain's mode asks, carried the largest `seq`: the server's
    /// start panicked adding one to it (and a release build would have wrapped to 0). Refused, naming the file.
    #[test]
    fn a_last_record_numbered_past_all_others_is_refused_at_the_start() {
        for key in [None, Some(ChainKey::from_bytes(&[7; 32]).unwrap())] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let body = format!(
                "{{\"ts\":\"2026-12-06T00:00:00Z\",\"event\":\"server_stop\",\"seq\":{},\"prev\":\"{GENESIS}\"",
                u64::MAX
            );
            let (name, value) = seal(body.as_bytes(), key.as_ref());
            std::fs::write(&path, format!("{body},\"{name}\":\"{value}\"}}\n")).unwrap();
            let refused = ChainedFileSink::append_to(&path, key.clone())
                .err()
                .expect("refused");
            let message = refused.to_string();
            assert!(message.contains("largest"), "{message}");
            assert!(message.contains("audit.jsonl"), "{message}");
        }
    }

    /// A red team gave a FIFO as a key file (the verifier blocked for ever) and `/dev/zero` (read until memory ran
    /// out). A key comes from a regular file of at most 64 KiB.
    #[test]
    fn a_key_file_that_is_not_a_small_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).unwrap();
        for path in [fifo.as_path(), Path::new("/dev/zero"), big.as_path()] {
            let chain = ChainKey::read(path).expect_err("refused").to_string();
            let checkpoint = CheckpointKey::read(path).expect_err("refused").to_string();
            let public = CheckpointPublicKey::read(path)
                .expect_err("refused")
                .to_string();
            for message in [chain, checkpoint, public] {
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(
                    message.contains("regular file") || message.contains("too long"),
                    "{message}"
                );
            }
        }
    }

    /// A red team named a file with a line break and terminal escapes: the verifier's report printed them as they
    /// were, a forged "intact" line of their choosing among its own. Names are shown escaped.
    #[test]
    fn a_file_name_cannot_drive_the_terminal_or_print_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("audit.jsonl\nintact: 99 records\u{1b}[2K\u{9b}31m\u{2028}intact\u{85}");
        write(&path, None, 1, 2);
        let mut altered = lines(&path);
        altered[1] = "not a record".into();
        put(&path, &altered);
        let checked = verify(&[&path], None, None).unwrap();
        let problem = checked.problem.expect("a problem").to_string();
        assert!(problem.contains("intact: 99 records"), "{problem}");
        assert!(
            !problem.contains(['\n', '\u{1b}', '\u{9b}', '\u{2028}', '\u{85}']),
            "{problem:?}"
        );
        assert!(
            problem.contains("\\u{a}intact") && problem.contains("\\u{1b}[2K"),
            "{problem}"
        );
    }

    /// Operator trial finding: lines of white space inserted between records (a blank line, a thousand, spaces,
    /// tabs, carriage returns), a carriage return after a record, or the whole file turned to CRLF verified intact:
    /// an edit that did not show, and room to carry data. The sink writes none of these: each is not a record.
    #[test]
    fn white_space_a_sink_never_writes_is_not_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 3);
        let genuine = lines(&path);
        let edits: [(&str, Vec<String>, u64); 6] = [
            (
                "a blank line",
                vec![
                    genuine[0].clone(),
                    String::new(),
                    genuine[1].clone(),
                    genuine[2].clone(),
                ],
                2,
            ),
            (
                "spaces",
                vec![
                    genuine[0].clone(),
                    "    ".into(),
                    genuine[1].clone(),
                    genuine[2].clone(),
                ],
                2,
            ),
            (
                "tabs",
                vec![
                    genuine[0].clone(),
                    genuine[1].clone(),
                    "\t \t".into(),
                    genuine[2].clone(),
                ],
                3,
            ),
            (
                "carriage returns",
                vec![
                    genuine[0].clone(),
                    "\r\r\r\r".into(),
                    genuine[1].clone(),
                    genuine[2].clone(),
                ],
                2,
            ),
            (
                "a carriage return after a record",
                vec![
                    genuine[0].clone(),
                    format!("{}\r", genuine[1]),
                    genuine[2].clone(),
                ],
                2,
            ),
            (
                "CRLF",
                genuine.iter().map(|line| format!("{line}\r")).collect(),
                1,
            ),
        ];
        for (edit, text, at) in edits {
            put(&path, &text);
            let checked = verify(&[&path], None, None).unwrap();
            assert!(
                matches!(checked.problem, Some(Problem::NotARecord { line, .. }) if line == at),
                "{edit}: {checked:?}"
            );
        }
        // Blank lines after the last record too, however long.
        put(&path, &genuine);
        let mut padded = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        padded.write_all(b"\n\n").unwrap();
        drop(padded);
        let checked = verify(&[&path], None, None).unwrap();
        assert!(
            matches!(checked.problem, Some(Problem::NotARecord { line: 4, .. })),
            "{checked:?}"
        );
    }

    /// The file at `path` without its lines of white space, as `blanks.jsonl` beside it.
    fn without_blanks(path: &Path) -> PathBuf {
        let kept: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .split('\n')
            .filter(|line| !line.bytes().all(|b| b.is_ascii_whitespace()))
            .map(str::to_owned)
            .collect();
        let copy = path.with_file_name("blanks.jsonl");
        put(&copy, &kept);
        copy
    }

    /// A red team appended two lines of 600,000 spaces after the last record of a keyed, checkpointed chain: the
    /// server, reading the last MiB for the last record, took the file for an empty one and started its chain again
    /// at 1. It continues from the record (and the verifier reports the lines, which are no records).
    #[test]
    fn blank_lines_longer_than_a_read_after_the_last_record_are_passed_over() {
        for key in [None, Some(ChainKey::from_bytes(&[7; 32]).unwrap())] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            write(&path, key.as_ref(), 1, 3);
            let mut padded = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            for _ in 0..2 {
                padded.write_all(&[b' '; 600_000]).unwrap();
                padded.write_all(b"\n").unwrap();
            }
            drop(padded);
            write(&path, key.as_ref(), 4, 4);
            let checked = verify(&[&path], key.as_ref(), None).unwrap();
            assert!(
                matches!(checked.problem, Some(Problem::NotARecord { line: 4, .. })),
                "{checked:?}"
            );
            let checked = verify(&[&without_blanks(&path)], key.as_ref(), None).unwrap();
            assert_eq!(checked.problem, None, "{checked:?}");
            assert_eq!((checked.records, checked.last_seq), (4, Some(4)));
        }
    }

    /// A red team appended a whole record, its `mac` written after a space (so not this chain's seal), without a
    /// newline: the verifier called it a line still being written (exit 0) while any JSON reader read one record
    /// more. A whole JSON object is no line being written: it is not a record.
    #[test]
    fn a_whole_object_without_its_newline_is_not_taken_for_a_line_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        write(&path, Some(&key), 1, 2);
        let last: Value = serde_json::from_str(&lines(&path)[1]).unwrap();
        let forged = format!(
            "{{\"event\":\"tool_call\",\"tool\":\"write_file\",\"seq\":3,\"prev\":{}, \"mac\":\"hmac-sha256:00\"}}",
            last["mac"]
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(forged.as_bytes()).unwrap();
        drop(file);
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert!(
            matches!(
                checked.problem,
                Some(Problem::NotARecord {
                    after: 2,
                    line: 3,
                    ..
                })
            ),
            "{checked:?}"
        );
        // Lines a strict parse refuses and lenient readers take: a member twice, a byte that is not UTF-8.
        let genuine = std::fs::read(&path).unwrap();
        let end = genuine.len() - forged.len();
        for other in [
            &br#"{"event":"tool_call","tool":"write_file","tool":"write_file","caller":"alice"}"#[..],
            &b"{\"event\":\"tool_call\",\"x\":\"\xff\"}"[..],
        ] {
            std::fs::write(&path, [&genuine[..end], other].concat()).unwrap();
            let checked = verify(&[&path], Some(&key), None).unwrap();
            assert!(
                matches!(checked.problem, Some(Problem::NotARecord { line: 3, .. })),
                "{checked:?}"
            );
        }
        std::fs::write(&path, &genuine).unwrap();
        // A line cut short is still one being written.
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        let checked = verify(&[&path], Some(&key), None).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert!(checked.incomplete.is_some(), "{checked:?}");
    }

    /// A red team tore the last line of a log (a crash), then rotated it (`FILE` to `FILE.1`, a new empty `FILE`)
    /// before the restart: the server refused to start ("its last line is not a record sealed with a key"), since
    /// a torn line was cut only from the file being appended to. The fragment is cut from `FILE.1` as it would have
    /// been from `FILE`, named in `FILE` by its `incomplete_line_cut` record (with the file it was cut from), and
    /// the set verifies.
    #[test]
    fn a_torn_last_line_rotated_out_before_the_restart_is_cut_from_the_rotated_file() {
        for key in [None, Some(ChainKey::from_bytes(&[7; 32]).unwrap())] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let rotated = dir.path().join("audit.jsonl.1");
            let torn = torn(&path, key.as_ref(), 3, 40);
            let kept = torn.iter().rposition(|b| *b == b'\n').unwrap() + 1;
            std::fs::rename(&path, &rotated).unwrap();
            std::fs::write(&path, "").unwrap();
            // Still held by a writer (a server not restarted since the rotation): refused, nothing cut.
            let holder = File::open(&rotated).unwrap();
            holder.lock().unwrap();
            let refused = ChainedFileSink::append_to(&path, key.clone())
                .err()
                .expect("refused while another process appends to FILE.1")
                .to_string();
            assert!(refused.contains("another process"), "{refused}");
            assert_eq!(std::fs::read(&rotated).unwrap(), torn);
            drop(holder);
            write(&path, key.as_ref(), 4, 4);
            assert_eq!(std::fs::read(&rotated).unwrap(), &torn[..kept]);
            let note: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
            assert_eq!(note["event"], "incomplete_line_cut");
            assert_eq!(note["file"], "audit.jsonl.1");
            assert_eq!(note["bytes"], torn.len() - kept);
            let named = verify(&[&rotated, &path], key.as_ref(), None).unwrap();
            assert_eq!(named.lines_cut[0].from.as_deref(), Some("audit.jsonl.1"));
            let checked = verify(&[&rotated, &path], key.as_ref(), None).unwrap();
            assert_eq!(checked.problem, None, "{checked:?}");
            assert_eq!((checked.records, checked.last_seq), (4, Some(4)));
            assert_eq!(checked.lines_cut.len(), 1, "{checked:?}");
        }
    }

    /// Red-team finding: `audit verify` given a FIFO nothing writes to (planted among rotated files, say) waited
    /// for a writer for ever, stalling a scheduled check. A log is opened without waiting for one; a pipe with a
    /// writer (`<(zcat audit.jsonl.2.gz)`) is still read as it is written.
    #[cfg(unix)]
    #[test]
    fn verify_does_not_wait_for_a_fifo_nothing_writes_to() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.jsonl");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let (done, checked) = std::sync::mpsc::channel();
        let lonely = fifo.clone();
        std::thread::spawn(move || {
            let _ = done.send(verify(&[&lonely], None, None).map(|v| v.records));
        });
        let records = checked
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("verify waited for a writer");
        assert_eq!(records.unwrap(), 0);
        // A pipe with a writer (as `<(zcat ...)` gives one): the records written are read.
        let written = dir.path().join("written.jsonl");
        write(&written, None, 1, 3);
        let text = std::fs::read(&written).unwrap();
        let mut ends = [0; 2];
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
        let (read_end, write_end) = unsafe {
            use std::os::fd::FromRawFd as _;
            (File::from_raw_fd(ends[0]), File::from_raw_fd(ends[1]))
        };
        let writer = std::thread::spawn(move || {
            let mut write_end = write_end;
            std::thread::sleep(std::time::Duration::from_millis(200));
            write_end.write_all(&text).unwrap();
        });
        let pipe = format!("/dev/fd/{}", ends[0]);
        let checked = verify(&[&pipe], None, None).unwrap();
        writer.join().unwrap();
        drop(read_end);
        assert_eq!((checked.problem, checked.records), (None, 3));
    }

    /// Red-team finding: a server started on a file rotated out while its writer still ran (logrotate's rename,
    /// the old server not stopped: an overlapping restart, a second instance by mistake) continued the chain from
    /// `FILE.1`, while the old writer went on appending there: two chains from one record, and an untampered set
    /// that verified as out of place. A rotated file another process still appends to stops the start, as the
    /// file itself does.
    #[test]
    fn a_new_file_does_not_continue_a_rotated_one_another_writer_still_appends_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let old = ChainedFileSink::append_to(&path, None).unwrap();
        old.write(&record(1)).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("refused while the old writer appends to FILE.1")
            .to_string();
        assert!(
            refused.contains("another process") && refused.contains("audit.jsonl.1"),
            "{refused}"
        );
        // Nothing was written to the new file, and the old writer goes on.
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"");
        old.write(&record(2)).unwrap();
        drop(old);
        // Its writer gone, the new file continues it, whoever reads it under a shared lock (red-team finding: a
        // reader's shared lock, a backup's or a shipper's, was taken for a writer's).
        let reader = File::open(&rotated).unwrap();
        reader.lock_shared().unwrap();
        let new = ChainedFileSink::append_to(&path, None).unwrap();
        drop(reader);
        new.write(&record(3)).unwrap();
        drop(new);
        let checked = verify(&[&rotated, &path], None, None).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert_eq!(checked.last_seq, Some(3), "{checked:?}");
    }

    /// A red team changed the last checkpoint's `ts`, `records` and `server_id` in an unkeyed chain and re-hashed its
    /// line: it verified as the signed checkpoint of a clean stop, since the signature covered its `prev` and `seq`
    /// only. It covers every member of the checkpoint now; a checkpoint signed as before (v1) still verifies.
    #[test]
    fn every_member_of_a_checkpoint_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let genuine = lines(&path);
        assert_eq!(verify(&[&path], None, Some(&public)).unwrap().problem, None);
        let rehashed = |object: &Value| {
            let mut object = object.as_object().unwrap().clone();
            object.remove("hash");
            let body = serde_json::to_vec(&Value::Object(object)).unwrap();
            let body = &body[..body.len() - 1];
            let (name, value) = seal(body, None);
            format!("{},\"{name}\":\"{value}\"}}", String::from_utf8_lossy(body))
        };
        let last: Value = serde_json::from_str(genuine.last().unwrap()).unwrap();
        assert_eq!(last["event"], "checkpoint");
        let records = last["records"].as_u64().unwrap();
        for (member, forged) in [
            ("ts", serde_json::json!("1999-01-01T00:00:00Z")),
            ("records", serde_json::json!(999_999)),
            ("server_id", serde_json::json!("EVIL")),
            // A review's: a member named as the other mode's seal, and the count written as a float.
            ("mac", serde_json::json!("anything")),
            ("records", serde_json::json!(records as f64)),
        ] {
            let mut edited = last.clone();
            edited[member] = forged;
            let mut file = genuine.clone();
            *file.last_mut().unwrap() = rehashed(&edited);
            put(&path, &file);
            let checked = verify(&[&path], None, Some(&public)).unwrap();
            assert!(
                matches!(checked.problem, Some(Problem::BadCheckpoint { .. })),
                "{member}: {checked:?}"
            );
        }
        // The same line re-hashed unedited still verifies (the test's re-hash is right), and so does a checkpoint
        // signed over its `prev` and `seq` only, as before.
        let mut file = genuine.clone();
        *file.last_mut().unwrap() = rehashed(&last);
        put(&path, &file);
        assert_eq!(verify(&[&path], None, Some(&public)).unwrap().problem, None);
        let mut v1 = last.clone();
        v1["sig"] = serde_json::json!(format!(
            "ed25519:{}",
            hex(&ed25519_dalek::Signer::sign(
                &ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
                format!(
                    "secure-tools audit checkpoint v1\n{}\n{}",
                    last["prev"].as_str().unwrap(),
                    last["seq"]
                )
                .as_bytes()
            )
            .to_bytes())
        ));
        *file.last_mut().unwrap() = rehashed(&v1);
        put(&path, &file);
        assert_eq!(verify(&[&path], None, Some(&public)).unwrap().problem, None);
    }

    /// A red team chained a `chain_resumed` record of its own, claiming a million records unvouched, onto a clean
    /// stop while the server was down; once the restarted server's checkpoint covered it, the verifier listed records
    /// 1 to 2 as vouched for by no checkpoint though checkpoint 2 signs them. A record's claim reaches back no further
    /// than the last checkpoint verified before it.
    #[test]
    fn a_chain_resumed_record_cannot_unvouch_what_a_verified_checkpoint_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap(); // `server_stop` (1) and its checkpoint (2)
        drop(sink);
        let forged = serde_json::json!({
            "event": "chain_resumed", "checkpoint": null, "unvouched": 1_000_000
        });
        let plain = ChainedFileSink::append_to(&path, None).unwrap();
        plain
            .append_object(forged.as_object().unwrap().clone())
            .unwrap(); // 3
        drop(plain);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(5)).unwrap(); // `chain_resumed` (4) naming 3, the record (5), a checkpoint (6)
        drop(sink);
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert_eq!(
            checked
                .unvouched
                .iter()
                .map(|u| (u.from, u.to, u.seq))
                .collect::<Vec<_>>(),
            [(3, 3, 4)],
            "{checked:?}"
        );
    }

    /// A review's start on a chain followed by 1.1 MiB of blank lines and then spaces without a newline wrote its
    /// first record glued onto the spaces (the verifier then found it altered); a torn line after as many blank
    /// lines was not cut (the record before it was looked for in the last MiB only). Blanks without a newline are
    /// ended with one, and a fragment is cut however many blank lines lie before it. (The verifier reports the blank
    /// lines, which are no records; without them the chain is whole.)
    #[test]
    fn blanks_and_fragments_after_many_blank_lines_leave_the_chain_whole() {
        for ending in [&b"   "[..], &b"{\"ts\":\"2026-12-0"[..]] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            write(&path, None, 1, 3);
            let mut padded = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            padded.write_all(&vec![b'\n'; 1_100_000]).unwrap();
            padded.write_all(ending).unwrap();
            drop(padded);
            write(&path, None, 4, 4);
            let checked = verify(&[&path], None, None).unwrap();
            assert!(
                matches!(checked.problem, Some(Problem::NotARecord { line: 4, .. })),
                "{checked:?}"
            );
            let checked = verify(&[&without_blanks(&path)], None, None).unwrap();
            assert_eq!(checked.problem, None, "{checked:?}");
            assert_eq!(
                checked.last_seq,
                Some(if ending[0] == b'{' { 5 } else { 4 })
            );
        }
        // A file of blanks alone is no chain to continue: refused (`a_file_of_blank_lines_only_stops_the_start`).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "   ").unwrap();
        assert!(ChainedFileSink::append_to(&path, None).is_err());
    }

    /// The line a sink fooled by a planted seal wrote (the record, then `prev` carrying members of its own), sealed
    /// with the right key: the verifier refuses it, since a member given twice is read differently by different
    /// parsers.
    #[test]
    fn the_verifier_refuses_a_record_with_a_member_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, Some(key.clone())).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let mut file = lines(&path);
        let last: Value = serde_json::from_str(file.last().unwrap()).unwrap();
        let (n, mac) = (last["seq"].as_u64().unwrap(), last["mac"].as_str().unwrap());
        let mut body = crate::audit::record_line(&record(2)).unwrap();
        body.pop();
        body.extend_from_slice(
            format!(
                ",\"seq\":{},\"prev\":\"{mac}\",\"event\":\"tool_call\",\"tool\":\"delete_all\",\"z\":\"\"",
                n + 1
            )
            .as_bytes(),
        );
        let (name, value) = seal(&body, Some(&key));
        let mut forged = String::from_utf8(body).unwrap();
        forged.push_str(&format!(",\"{name}\":\"{value}\"}}"));
        file.push(forged);
        put(&path, &file);
        assert!(
            matches!(
                verify(&[&path], Some(&key), Some(&public)).unwrap().problem,
                Some(Problem::NotARecord {
                    after: 2,
                    line: 3,
                    ..
                })
            ),
            "{:?}",
            verify(&[&path], Some(&key), Some(&public))
        );
    }

    /// Two processes appending to one file would write records of the same numbers, and one's cut of a torn write
    /// could cut the other's record: a second sink is refused while the first holds the file.
    #[test]
    fn a_second_sink_on_the_same_file_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = ChainedFileSink::append_to(&path, None).unwrap();
        first.write(&record(1)).unwrap();
        let refused = ChainedFileSink::append_to(&path, None)
            .err()
            .expect("a second sink appended to the file the first holds");
        let message = refused.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("another"),
            "{message}"
        );
        drop(first);
        let second = ChainedFileSink::append_to(&path, None).unwrap();
        second.write(&record(2)).unwrap();
        assert_eq!(verify(&[&path], None, None).unwrap().problem, None);
    }

    /// The file holds identities, token ids, addresses and arguments: created readable by its owner only.
    #[cfg(unix)]
    #[test]
    fn a_new_audit_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    /// Auditor's trial: a record whose `prev` is not the seal of the record before it was reported as that record
    /// altered, with the line of the next one; and when the records from there on came from another log (a splice),
    /// a genuine record was blamed. The break is now named as such, by both records, at the line it shows.
    #[test]
    fn a_record_that_does_not_follow_the_one_before_is_named_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (
            dir.path().join("ours.jsonl"),
            dir.path().join("theirs.jsonl"),
        );
        write(&ours, None, 1, 6);
        write(&theirs, None, 1, 6);
        let mut spliced = lines(&ours)[..3].to_vec();
        spliced.extend_from_slice(&lines(&theirs)[3..]);
        let path = dir.path().join("spliced.jsonl");
        put(&path, &spliced);
        let problem = verify(&[&path], None, None).unwrap().problem;
        assert!(
            matches!(
                problem,
                Some(Problem::Unlinked {
                    seq: 4,
                    after: 3,
                    line: 4,
                    ..
                })
            ),
            "{problem:?}"
        );
        let shown = problem.unwrap().to_string();
        assert!(
            shown.starts_with("record 4 does not follow record 3"),
            "{shown}"
        );
    }

    /// Auditor's trial: `verify /dev/zero` never returned: a line longer than any record was read to its end (none)
    /// before it was reported. It is reported once it is known to be too long.
    #[test]
    fn a_line_without_end_is_reported_once_too_long() {
        let mut endless = io::BufReader::new(io::repeat(b'0'));
        let mut line = Vec::new();
        assert_eq!(
            read_line_ended(&mut endless, &mut line, MAX_LINE).unwrap(),
            Some((false, false))
        );
        assert!(line.is_empty());
    }

    /// Auditor's trial: a directory given to verify was reported as `Is a directory (os error 21)`, unnamed.
    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = verify(&[dir.path()], None, None).unwrap_err().to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }

    /// Auditor's trial: the server signed checkpoints with the public key given as its key (anyone holding it
    /// could then sign), and the verifier given the private key said a checkpoint was not signed (read as tampering)
    /// or printed an unnamed `Cannot decompress Edwards point`. Each mix-up is refused, naming the file.
    #[test]
    fn checkpoint_keys_mixed_up_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("cp.key");
        let public = dir.path().join("cp.key.pub");
        let key = CheckpointKey::from_seed([5; 32]);
        std::fs::write(&private, key.seed_hex()).unwrap();
        std::fs::write(&public, key.public_hex()).unwrap();
        let error = CheckpointKey::read(&public).err().unwrap().to_string();
        assert!(error.contains("this is a public key"), "{error}");
        let error = CheckpointPublicKey::read(&private)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("it is the private key"), "{error}");
        assert!(CheckpointKey::read(&private).is_ok());
        assert!(CheckpointPublicKey::read(&public).is_ok());
        // 64 hex digits that are no point of the curve.
        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, "02".repeat(32)).unwrap();
        let error = CheckpointPublicKey::read(&bad).err().unwrap().to_string();
        assert!(
            error.contains("bad.pub") && error.contains("not an Ed25519 public key"),
            "{error}"
        );
        // A private seed moved away from its `.pub` is read as a public key: about half of all seeds are no point of
        // the curve, and the refusal says what the file may be (one that is a point is the verifier's case).
        let seed = (0u8..=255)
            .map(|n| CheckpointKey::from_seed([n; 32]))
            .find(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0.to_bytes()).is_err())
            .expect("some seed is no point");
        let moved = dir.path().join("moved.key");
        std::fs::write(&moved, seed.seed_hex()).unwrap();
        let error = CheckpointPublicKey::read(&moved).err().unwrap().to_string();
        assert!(
            error.contains("moved.key") && error.contains("verify with FILE.pub"),
            "{error}"
        );
    }

    /// Review finding: an audit file everyone could read (its records hold identities, token ids, addresses and
    /// arguments) was taken without a word, where one others could write was warned of.
    #[cfg(unix)]
    #[test]
    fn an_audit_file_everyone_can_read_is_told_apart() {
        for (mode, expected) in [
            (0o600, (false, false)),
            (0o640, (false, false)),
            (0o644, (false, true)),
            (0o620, (true, false)),
            (0o602, (true, false)),
            (0o666, (true, true)),
        ] {
            assert_eq!(loose_mode(0o100000 | mode), expected, "{mode:o}");
        }
    }

    /// Auditor's trial: a start refused because `FILE.1` is chained with another key named `FILE` (which did not
    /// exist) and left it behind, empty. The file at fault is named, and none is left.
    #[test]
    fn a_start_refused_for_the_rotated_file_names_it_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = rotated_name(&path);
        write(
            &rotated,
            Some(&ChainKey::from_bytes(&[7; 32]).unwrap()),
            1,
            2,
        );
        let other = ChainKey::from_bytes(&[9; 32]).unwrap();
        let error = ChainedFileSink::append_to(&path, Some(other))
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(&rotated.display().to_string()), "{error}");
        assert!(!path.exists(), "an empty file was left");
    }

    /// A tampered line's own `seq` is whatever the tamperer wrote: the verifier names the record due there.
    #[test]
    fn an_altered_record_is_named_by_the_number_due_not_the_number_it_carries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 5);
        let mut edited = lines(&path);
        edited[2] = edited[2].replace("\"seq\":3", "\"seq\":8");
        put(&path, &edited);
        let problem = verify(&[&path], None, None).unwrap().problem;
        assert!(
            matches!(
                problem,
                Some(Problem::Altered {
                    seq: 3,
                    found: 8,
                    line: 3,
                    ..
                })
            ),
            "{problem:?}"
        );
        let shown = problem.unwrap().to_string();
        assert!(shown.starts_with("record 3 was altered"), "{shown}");
        assert!(shown.contains("8"), "{shown}");
    }

    /// A record deleted, and a line that merely names its number appended: not a record moved, one removed.
    #[test]
    fn a_record_removed_is_not_taken_for_one_moved_by_a_line_naming_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 5);
        let mut file = lines(&path);
        file.remove(2);
        file.push("{\"seq\":3}".into());
        put(&path, &file);
        let problem = verify(&[&path], None, None).unwrap().problem;
        assert!(
            matches!(
                problem,
                Some(Problem::Removed {
                    seq: 3,
                    line: 3,
                    ..
                })
            ),
            "{problem:?}"
        );
        // A genuine record moved later is still out of place, not removed.
        let mut moved = lines(&path);
        moved.pop();
        let genuine = moved.remove(1);
        moved.push(genuine);
        put(&path, &moved);
        let problem = verify(&[&path], None, None).unwrap().problem;
        assert!(
            matches!(
                problem,
                Some(Problem::OutOfOrder {
                    seq: 4,
                    expected: 2,
                    ..
                })
            ),
            "{problem:?}"
        );
    }

    /// Without the checkpoint key no checkpoint is verified: nothing says the file ends with a clean stop's.
    #[test]
    fn a_clean_end_is_claimed_only_when_its_checkpoint_was_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap(); // `server_stop`, then its checkpoint
        drop(sink);
        let verified = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!((verified.problem, verified.ends_clean), (None, true));
        let unverified = verify(&[&path], None, None).unwrap();
        assert_eq!((unverified.problem, unverified.ends_clean), (None, false));
    }

    /// A live file's last line may be still being written (no newline yet): not a record altered or inserted, but
    /// one incomplete, reported as such; in an older file of a set, or followed by a newline, it stays a problem.
    #[test]
    fn a_last_line_still_being_written_is_incomplete_not_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 3);
        let genuine = lines(&path);
        let mut partial = genuine[..2].join("\n") + "\n";
        partial.push_str(&genuine[2][..40]);
        std::fs::write(&path, &partial).unwrap();
        let live = verify(&[&path], None, None).unwrap();
        assert_eq!(
            (live.problem, live.records, live.last_seq),
            (None, 2, Some(2))
        );
        assert_eq!(
            live.incomplete,
            Some(Incomplete {
                file: path.display().to_string(),
                line: 3
            })
        );
        // The same line ended (a newline after it), or in a file older than the last, is not being written.
        std::fs::write(&path, partial.clone() + "\n").unwrap();
        assert!(matches!(
            verify(&[&path], None, None).unwrap().problem,
            Some(Problem::NotARecord {
                after: 2,
                line: 3,
                ..
            })
        ));
        std::fs::write(&path, &partial).unwrap();
        let newer = dir.path().join("audit.jsonl.new");
        std::fs::write(&newer, "").unwrap();
        assert!(matches!(
            verify(&[&path, &newer], None, None).unwrap().problem,
            Some(Problem::NotARecord {
                after: 2,
                line: 3,
                ..
            })
        ));
    }

    /// Review finding: a restarted server continued from whatever last record it found, and its next checkpoint
    /// vouched for it: records chained onto a cleanly stopped file while the server was down (an unkeyed chain
    /// here; with the chain key, the same) were signed by a genuine checkpoint, and the file verified clean.
    #[test]
    fn records_appended_while_the_server_was_down_are_not_vouched_for_by_its_next_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap(); // `server_stop` (1) and its checkpoint (2): a clean stop
        drop(sink);
        // Appended while the server was down, correctly chained, without the checkpoint key.
        write(&path, None, 3, 4);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(5)).unwrap(); // and its checkpoint
        drop(sink);
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert!(
            !(checked.ends_clean && checked.unsigned_tail == 0 && checked.unvouched.is_empty()),
            "the appended records were vouched for: {checked:?}\n{}",
            lines(&path).join("\n")
        );
        // The restarted sink's first line says so, and its checkpoint signs that: records 3 and 4, after checkpoint 2.
        let file = lines(&path);
        let resumed: Value = serde_json::from_str(&file[4]).unwrap();
        assert_eq!(
            (
                &resumed["event"],
                &resumed["seq"],
                &resumed["checkpoint"],
                &resumed["unvouched"]
            ),
            (&"chain_resumed".into(), &5.into(), &2.into(), &2.into()),
            "{}",
            file.join("\n")
        );
        assert_eq!(
            (checked.unvouched_ranges, checked.unvouched),
            (
                1,
                vec![Unvouched {
                    from: 3,
                    to: 4,
                    checkpoint: Some(2),
                    seq: 5,
                    file: path.display().to_string(),
                    line: 5
                }]
            )
        );
        // A clean restart (the file ends with the checkpoint of the last stop) writes no such record.
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(8)).unwrap();
        drop(sink);
        let file = lines(&path);
        assert!(file[7].contains("\"reason\":\"r8\""), "{}", file.join("\n"));
        assert_eq!(
            verify(&[&path], None, Some(&public))
                .unwrap()
                .unvouched_ranges,
            1
        );
        // Without the checkpoint key nothing is vouched for, and no range is listed.
        assert!(verify(&[&path], None, None).unwrap().unvouched.is_empty());
    }

    /// A restart after a crash: the records the crash left unsigned are named, in a file with a chain key too;
    /// with no checkpoint of the key anywhere (one written before checkpoints were configured), all of them. The
    /// checkpoint is found behind more than a block of records.
    #[test]
    fn a_restart_names_the_records_after_the_last_checkpoint_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[7; 32]).unwrap();
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        write(&path, Some(&key), 1, 2); // no checkpoint key yet
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, Some(key.clone())).unwrap(),
            &checkpoint,
        );
        sink.write(&record(4)).unwrap(); // `chain_resumed` (3), the record (4), a checkpoint (5)
        let resumed: Value = serde_json::from_str(&lines(&path)[2]).unwrap();
        assert_eq!(
            (&resumed["checkpoint"], &resumed["unvouched"]),
            (&Value::Null, &2.into())
        );
        // A crash: records after the checkpoint, never signed (quiet ones, which no checkpoint follows at once).
        for n in 0..400 {
            let mut quiet = record(n);
            quiet.event = AuditEvent::AuditSuppressed {
                suppressed_event: "http_rejected",
                count: n,
                reasons: [("missing_token", n)].into(),
            };
            sink.write(&quiet).unwrap();
        }
        drop(sink); // no checkpoint: as after a crash
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, Some(key.clone())).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let checked = verify(&[&path], Some(&key), Some(&public)).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        let ranges: Vec<_> = checked
            .unvouched
            .iter()
            .map(|u| (u.from, u.to, u.checkpoint, u.seq))
            .collect();
        assert_eq!(ranges, [(1, 2, None, 3), (6, 405, Some(5), 406)]);
    }

    /// Red-team finding: the start cut any last line without its newline that was no record as a crash's fragment,
    /// so a restart made tampering look like a crash: an altered last record (a checkpoint, one byte changed, its
    /// newline removed) was cut and the verifier's `altered` became `lines_cut`; garbage or a whole forged object
    /// appended without a newline went from `not_a_record` to clean. Only what a write cut short leaves, the start
    /// of a JSON text, is cut; anything else is refused at start, the file left as it is.
    #[test]
    fn only_a_line_cut_short_is_cut_at_start_never_a_whole_or_foreign_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write(&path, None, 1, 3);
        let genuine = lines(&path);
        let altered = genuine[2].replacen("\"reason\":\"r3\"", "\"reason\":\"r4\"", 1);
        assert_ne!(altered, genuine[2]);
        for (what, text) in [
            (
                "an altered last record",
                format!("{}\n{}\n{}", genuine[0], genuine[1], altered),
            ),
            (
                "garbage",
                format!("{}\nINJECTED GARBAGE {{\"x\":1}}", genuine.join("\n")),
            ),
            (
                "a whole forged object",
                format!(
                    "{}\n{{\"event\":\"tool_call\",\"tool\":\"delete_all\"}}",
                    genuine.join("\n")
                ),
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            assert!(
                ChainedFileSink::append_to(&path, None).is_err(),
                "{what}: continued"
            );
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                text,
                "{what}: changed"
            );
        }
        // What a crash leaves is still cut, and named.
        std::fs::write(
            &path,
            format!("{}\n{{\"ts\":\"2026-12-0", genuine.join("\n")),
        )
        .unwrap();
        write(&path, None, 4, 4);
        let checked = verify(&[&path], None, None).unwrap();
        assert_eq!(checked.problem, None, "{checked:?}");
        assert_eq!(checked.lines_cut.len(), 1, "{checked:?}");
    }

    /// Operator trial finding: a file whose checkpoints one key signed was continued with another checkpoint key
    /// (a `chain_resumed` record calling every record unvouched), and the file then failed verification with either
    /// key, as a forgery. A chain keeps one checkpoint key: the other is refused, the file left as it was.
    #[test]
    fn a_file_is_not_continued_with_another_checkpoint_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let first = CheckpointKey::from_seed([3; 32]);
        let other = CheckpointKey::from_seed([4; 32]);
        let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &first);
        sink.write(&record(1)).unwrap();
        drop(sink);
        let before = std::fs::read(&path).unwrap();
        let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &other);
        let refused = sink
            .write(&record(2))
            .expect_err("continued with another checkpoint key");
        assert!(refused.to_string().contains("checkpoint key"), "{refused}");
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // With its own key it goes on, and verifies.
        let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &first);
        sink.write(&record(2)).unwrap();
        drop(sink);
        let public = public_key(dir.path(), &first);
        assert_eq!(verify(&[&path], None, Some(&public)).unwrap().problem, None);
        // Red-team finding: the checkpoint in the rotated file (a new file continuing it) was refused naming the
        // new file, which the refused start left behind, empty.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        let sink = with_checkpoints(ChainedFileSink::append_to(&path, None).unwrap(), &other);
        let refused = sink
            .write(&record(3))
            .expect_err("continued with another checkpoint key");
        assert!(refused.to_string().contains("audit.jsonl.1"), "{refused}");
        drop(sink);
        assert!(!path.exists(), "a refused start left the file it made");
    }

    /// The backward search for the last checkpoint: whatever block boundary the line straddles, behind a line longer
    /// than any record; one signed with another key is found as such, one whose seal does not match is not found.
    #[test]
    fn the_last_signed_checkpoint_is_found_reading_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.write(&record(1)).unwrap();
        drop(sink);
        let genuine = lines(&path);
        let other = CheckpointPublicKey(CheckpointKey::from_seed([4; 32]).0.verifying_key());
        let found = |text: &str, public: &CheckpointPublicKey| {
            std::fs::write(&path, text).unwrap();
            last_signed_checkpoint(&mut File::open(&path).unwrap(), None, public)
                .unwrap()
                .map(|(found, _)| found)
        };
        let line = genuine[1].len() + 1;
        for pad in [
            0,
            1,
            65536 - line - 1,
            65536 - line,
            65536 - 10,
            65536,
            3 * 65536 + 7,
        ] {
            let mut text = "x".repeat(pad) + "\n" + &genuine.join("\n") + "\n";
            assert_eq!(
                found(&text, &public),
                Some(Checkpoint::Signed(2)),
                "pad {pad}"
            );
            assert_eq!(found(&text, &other), Some(Checkpoint::Foreign), "pad {pad}");
            text.push_str(&"y".repeat(MAX_LINE + 70000));
            text.push_str("\n{}\n");
            assert_eq!(
                found(&text, &public),
                Some(Checkpoint::Signed(2)),
                "pad {pad}, a long line after"
            );
        }
        // At the very start of the file, with no newline after it.
        assert_eq!(found(&genuine[1], &public), Some(Checkpoint::Signed(2)));
        // Its seal no longer matching (its `records` edited), it is not found.
        let edited = genuine[1].replacen("\"records\":1", "\"records\":9", 1);
        assert_eq!(found(&(edited + "\n"), &public), None);
    }

    /// Keeps the lines it is handed; panics on them when asked to.
    #[derive(Default)]
    struct Mirror {
        lines: Mutex<Vec<String>>,
        panics: std::sync::atomic::AtomicBool,
    }

    impl LineMirror for Mirror {
        fn mirror(&self, _: Option<&AuditRecord>, line: &str) {
            self.lines.lock().unwrap().push(line.to_owned());
            if self.panics.load(std::sync::atomic::Ordering::Relaxed) {
                panic!("a mirror panicking for a test");
            }
        }
    }

    fn quiet(n: u64) -> AuditRecord {
        let mut quiet = record(n);
        quiet.event = AuditEvent::AuditSuppressed {
            suppressed_event: "http_rejected",
            count: n,
            reasons: [("missing_token", n)].into(),
        };
        quiet
    }

    /// Review finding: a record whose sync failed after its bytes were in the file was reported failed like one
    /// never written, and neither mirrored nor counted for the next checkpoint (which then did not follow it).
    #[test]
    fn a_record_written_but_not_synced_is_mirrored_counted_and_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let mirror = std::sync::Arc::new(Mirror::default());
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None)
                .unwrap()
                .with_durability(Durability::SyncEachRecord),
            &checkpoint,
        )
        .with_mirror(mirror.clone());
        sink.lock().fail.sync = true;
        // Still a failure (the record may not survive a power loss), but one told apart from a record not written.
        let failed = sink.write(&quiet(1));
        assert!(
            matches!(failed, Err(AuditError::NotSynced(_))),
            "{failed:?}"
        );
        assert_eq!(lines(&path).len(), 1);
        assert_eq!(*mirror.lines.lock().unwrap(), lines(&path));
        assert_eq!(sink.lock().unsigned, 1);
        sink.lock().fail.sync = false;
        sink.checkpoint().unwrap();
        drop(sink);
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(
            (checked.problem, checked.records, checked.unsigned_tail),
            (None, 2, 0)
        );
    }

    /// Review finding: a mirror panicking after the record was written made the write a failure (the panic went
    /// up through the sink), and the record was not counted for the next checkpoint.
    #[test]
    fn a_mirror_panicking_does_not_fail_a_record_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let mirror = std::sync::Arc::new(Mirror::default());
        mirror
            .panics
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        )
        .with_mirror(mirror.clone());
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.write(&quiet(1))));
        assert!(matches!(written, Ok(Ok(()))), "{written:?}");
        assert_eq!(sink.lock().unsigned, 1);
        assert_eq!(mirror.lines.lock().unwrap().len(), 1);
    }

    /// Review finding: a checkpoint failing after a record was written made the record's write a failure. Now the
    /// record is reported written, and the checkpoint is tried again: with the next record, or at the flush.
    #[test]
    fn a_checkpoint_failing_after_a_record_does_not_fail_the_record_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.lock().fail.checkpoint = true;
        sink.write(&record(1)).unwrap(); // `server_stop`: a checkpoint is due, and fails
        assert_eq!(lines(&path).len(), 1);
        sink.lock().fail.checkpoint = false;
        sink.flush().unwrap();
        assert_eq!(lines(&path).len(), 2);
        drop(sink);
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(
            (checked.problem, checked.unsigned_tail, checked.ends_clean),
            (None, 0, true)
        );
        // Due with the next record: tried again with the one after.
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.lock().fail.checkpoint = true;
        sink.write(&record(3)).unwrap();
        sink.lock().fail.checkpoint = false;
        sink.write(&quiet(4)).unwrap();
        assert!(
            lines(&path)[4].contains("\"event\":\"checkpoint\""),
            "{:?}",
            lines(&path)
        );
    }

    /// Review finding: the flush returned the error of an owed checkpoint tried again, and the shutdown, which
    /// flushes before its `server_stop` record with `?`, then wrote no `server_stop` at all. The flush logs it;
    /// the checkpoint stays owed and follows the next record.
    #[test]
    fn a_checkpoint_failing_again_at_the_flush_does_not_fail_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let checkpoint = CheckpointKey::from_seed([3; 32]);
        let public = public_key(dir.path(), &checkpoint);
        let sink = with_checkpoints(
            ChainedFileSink::append_to(&path, None).unwrap(),
            &checkpoint,
        );
        sink.lock().fail.checkpoint = true;
        sink.write(&record(1)).unwrap(); // a checkpoint due after it, failing
        sink.flush().unwrap(); // tried again, failing again
        assert!(sink.lock().checkpoint_owed);
        sink.write(&record(2)).unwrap(); // the `server_stop` after the flush
        assert_eq!(lines(&path).len(), 2);
        sink.lock().fail.checkpoint = false;
        sink.flush().unwrap();
        drop(sink);
        let checked = verify(&[&path], None, Some(&public)).unwrap();
        assert_eq!(
            (
                checked.problem,
                checked.records,
                checked.unsigned_tail,
                checked.ends_clean
            ),
            (None, 3, 0, true)
        );
    }

    /// The durability settings' text, and what a mistake in it says (operator trial finding: `0s` was told only
    /// what was expected, as if it were no duration).
    #[test]
    fn durability_is_read_from_its_setting_and_a_zero_interval_is_named() {
        assert!(matches!("write".parse(), Ok(Durability::Write)));
        assert!(matches!("record".parse(), Ok(Durability::SyncEachRecord)));
        assert!(matches!(
            "250ms".parse(),
            Ok(Durability::SyncEvery(d)) if d == std::time::Duration::from_millis(250)
        ));
        let zero = "0s".parse::<Durability>().err().unwrap();
        assert!(zero.contains("between 1 ms and one day"), "{zero}");
        let other = "often".parse::<Durability>().err().unwrap();
        assert!(other.contains("expected `write`, `record`"), "{other}");
    }

    /// `SyncEvery(d)`: a record followed by silence is synced within about `d` too, not only when a later record
    /// comes.
    #[test]
    fn a_record_followed_by_silence_is_synced_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let interval = std::time::Duration::from_millis(100);
        let sink = ChainedFileSink::append_to(&path, None)
            .unwrap()
            .with_durability(Durability::SyncEvery(interval));
        // Syncs fail while the record is written, so that it is left unsynced however slowly this runs (its write
        // syncs it when the interval has passed since the start, and the timer may try at any moment): only a sync
        // after it, which nothing but the timer does, clears the flag.
        sink.lock().fail.sync = true;
        let written = sink.write(&record(1));
        assert!(
            matches!(written, Ok(()) | Err(AuditError::NotSynced(_))),
            "{written:?}"
        );
        let mut state = sink.lock();
        assert!(state.unsynced);
        state.fail.sync = false;
        drop(state);
        let started = std::time::Instant::now();
        while sink.lock().unsynced {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the record was never synced"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
