//! The boot counter (DESIGN.md "Security"): a number that grows at every start of the daemon, persisted
//! in the state directory. Handshake initiations carry (boot counter, monotonic time), and a responder
//! refuses one that is not newer than the last it accepted from the same key, so a recorded initiation
//! cannot be replayed, without any wall clock (routers may have no RTC).
//!
//! The counter must never go back: it is written to a temporary file, synced, renamed over the old one
//! and the directory synced before the daemon uses the new value. A file that cannot be read as a
//! counter stops the daemon with a sentence saying what to do, since guessing low would make every peer
//! that remembers us refuse our handshakes.
//!
//! File format (`boot.count`): the line `vngate-boot 1`, then the counter in decimal.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The counter file's name in the state directory.
pub const BOOT_FILE: &str = "boot.count";
const HEADER: &str = "vngate-boot 1";

/// Why the boot counter could not be advanced.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Reading or writing the file failed.
    #[error("cannot {action} the boot counter {}: {source}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a counter this daemon wrote.
    #[error(
        "the boot counter {} is malformed; write `{HEADER}` and, on a second line, a number larger than any \
         earlier boot (e.g. the output of `date +%s`) into it, then start again",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The counter reached its largest value.
    #[error("the boot counter {} is exhausted; this node needs a new identity (`vngate keygen --force`)", path.display())]
    Exhausted {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the counter in `dir` (0 when the file does not exist yet), writes the next value durably and
/// returns it.
pub fn next(dir: &Path) -> Result<u64, BootError> {
    let path = dir.join(BOOT_FILE);
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BootError::Io { action, path, source }
    };
    let last = match fs::read_to_string(&path) {
        Ok(text) => parse(&text).ok_or_else(|| BootError::Malformed { path: path.clone() })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let next = last.checked_add(1).ok_or_else(|| BootError::Exhausted { path: path.clone() })?;
    let tmp = dir.join(format!("{BOOT_FILE}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{HEADER}\n{next}")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(io_err("write", &path))?;
    Ok(next)
}

fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let n = lines.next()?.trim().parse().ok()?;
    lines.all(|l| l.trim().is_empty()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_grows_at_every_start_and_survives_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next(dir.path()).unwrap(), 1);
        assert_eq!(next(dir.path()).unwrap(), 2);
        assert_eq!(fs::read_to_string(dir.path().join(BOOT_FILE)).unwrap(), "vngate-boot 1\n2\n");
        assert!(!dir.path().join("boot.count.tmp").exists());
    }

    #[test]
    fn a_malformed_file_stops_with_a_sentence_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for bad in
            ["", "vngate-boot 1\n", "vngate-boot 1\nseven\n", "vngate-boot 2\n5\n", "vngate-boot 1\n5\n6\n"]
        {
            fs::write(dir.path().join(BOOT_FILE), bad).unwrap();
            let e = next(dir.path()).unwrap_err();
            assert!(matches!(e, BootError::Malformed { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("date +%s"), "{e}");
            assert_eq!(fs::read_to_string(dir.path().join(BOOT_FILE)).unwrap(), bad, "never overwritten");
        }
        fs::write(dir.path().join(BOOT_FILE), format!("vngate-boot 1\n{}\n", u64::MAX)).unwrap();
        assert!(matches!(next(dir.path()), Err(BootError::Exhausted { .. })));
    }
}
