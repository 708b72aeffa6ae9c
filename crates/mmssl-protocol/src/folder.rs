//! Run folders that never hold stale or mixed results: an exclusive lock while a run (or a
//! grid) writes one, and a refusal to start a run over an earlier one unless resuming it or
//! explicitly overwriting it.

use crate::error::{ProtocolError, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file of a run or experiment folder.
pub const LOCK_FILE: &str = ".lock";

/// The files and folders a run writes: what `overwrite` removes.
pub const RUN_ARTIFACTS: &[&str] = &[
    "config.toml",
    "run.json",
    "metrics.jsonl",
    "online_start.json",
    "online.png",
    "online.svg",
    "eval.json",
    "eval.partial.json",
    "similarity.json",
    "lcca.json",
    "split.json",
    "landmarks.json",
    "error.txt",
    "checkpoints",
    "explain",
    "maps",
];

/// What shows that a folder's run got somewhere, beside any file in `checkpoints/` (weights,
/// trained or imported): a result. A folder whose run files include none of these is the
/// leftover of a run that failed while setting up (before its first checkpoint): a new run
/// takes it over without `overwrite`.
pub const RUN_RESULTS: &[&str] = &["eval.json", "similarity.json", "lcca.json", "explain"];

/// Whether the run in `dir` got somewhere: a file in `checkpoints/` or one of [`RUN_RESULTS`].
fn got_somewhere(dir: &Path) -> bool {
    let weights = std::fs::read_dir(dir.join("checkpoints")).is_ok_and(|mut d| d.next().is_some());
    weights || RUN_RESULTS.iter().any(|r| dir.join(r).exists())
}

/// An exclusive lock on a folder, held until dropped (and released by the system when the
/// process ends, however it ends, so a dead process leaves no stale lock).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Locks `dir` (created if missing). Another holder, in this process or another, makes
    /// it a [`ProtocolError::Locked`] naming the holder's process id.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        std::fs::create_dir_all(dir).map_err(|e| ProtocolError::write(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ProtocolError::write(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                return Err(ProtocolError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(ProtocolError::write(&path, e)),
        }
        // The holder's process id, for the message another process gets.
        file.set_len(0)
            .map_err(|e| ProtocolError::write(&path, e))?;
        write!(file, "{}", std::process::id()).map_err(|e| ProtocolError::write(&path, e))?;
        Ok(FolderLock { _file: file, path })
    }

    /// Whether some process holds the lock of `dir`, found without taking it (so that a run
    /// starting at that moment is never refused because of the question): on Linux from
    /// `/proc/locks`, which lists the locks of this machine. `None` where that cannot be
    /// known (another system, no lock file). A lock held on another machine of a shared file
    /// system is not seen.
    pub fn is_held(dir: &Path) -> Option<bool> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.join(LOCK_FILE)).ok()?;
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        let dev = meta.dev();
        // Linux's encoding of a device number.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        Some(
            locks
                .lines()
                .any(|l| l.split_whitespace().nth(5) == Some(id.as_str())),
        )
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The entries of `dir` other than its lock file (none if it does not exist or is not a
/// folder).
pub fn entries(dir: &Path) -> Result<Vec<String>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        // Missing, or under a file: nothing in it (making it is what fails, as a write).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(ProtocolError::read(dir, e)),
    };
    let mut names: Vec<String> = read
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect();
    names.sort();
    Ok(names)
}

/// Whether `dir` can take a new run, without touching it: empty (but for its lock) or
/// missing; holding only the files of a run that never trained (no checkpoint file and none of
/// [`RUN_RESULTS`]: it failed while setting up); or holding an earlier run's files when
/// `overwrite`. Returns the
/// entries [`prepare_fresh`] would remove. A refusal ([`ProtocolError::NotEmpty`]) writes
/// nothing.
pub fn check_fresh(dir: &Path, overwrite: bool) -> Result<Vec<String>> {
    let found = entries(dir)?;
    if found.is_empty() {
        return Ok(found);
    }
    let foreign = found
        .iter()
        .any(|n| !RUN_ARTIFACTS.contains(&n.as_str()) && !n.ends_with(".tmp"));
    if foreign || (!overwrite && got_somewhere(dir)) {
        return Err(ProtocolError::NotEmpty {
            dir: dir.to_path_buf(),
            entries: found,
            foreign,
        });
    }
    Ok(found)
}

/// Makes `dir` ready for a new run: empty (but for its lock) it is used as it is; holding an
/// earlier run it is refused, or with `overwrite` that run's files are removed first. Files a
/// run does not write are never removed: with them the folder is refused even with
/// `overwrite` ([`check_fresh`]).
pub fn prepare_fresh(dir: &Path, overwrite: bool) -> Result<()> {
    for name in &check_fresh(dir, overwrite)? {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| ProtocolError::write(&path, e))?;
    }
    Ok(())
}

/// Makes a new, empty folder `base`, or `base-2`, `base-3`, ... when that name is taken, and
/// returns it. The folder is created atomically, so two processes asking for the same `base`
/// at the same moment (two runs started in the same second) get two folders.
pub fn claim_new(base: &Path) -> Result<PathBuf> {
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ProtocolError::write(parent, e))?;
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    for k in 1usize.. {
        let candidate = match k {
            1 => base.to_path_buf(),
            _ => base.with_file_name(format!("{name}-{k}")),
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ProtocolError::write(&candidate, e)),
        }
    }
    unreachable!("a free name is found before usize runs out")
}

/// A sibling name for a folder moved aside: `NAME.replaced-<unix seconds>[-k]`.
pub fn aside_name(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let mut k = 0;
    loop {
        let candidate = dir.with_file_name(match k {
            0 => format!("{name}.replaced-{secs}"),
            _ => format!("{name}.replaced-{secs}-{k}"),
        });
        if !candidate.exists() {
            return candidate;
        }
        k += 1;
    }
}

/// `YYYYMMDD-HHMMSS` in UTC of `time` (days to a civil date by Howard Hinnant's algorithm):
/// default run folders, Slurm submissions.
pub fn utc_stamp(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Writes `text` to `path` through a temporary file and a rename: a reader never sees a
/// partial file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| ProtocolError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ProtocolError::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_folders_are_new_even_when_claimed_together() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("runs").join("XX-20261207-000000");
        let first = claim_new(&base).unwrap();
        assert_eq!(first, base);
        assert_eq!(
            claim_new(&base).unwrap(),
            dir.path().join("runs/XX-20261207-000000-2")
        );
        let claimed: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| claim_new(&base).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = claimed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{claimed:?}");
    }

    #[test]
    fn a_folder_whose_run_never_trained_takes_a_new_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("config.toml"), "").unwrap();
        std::fs::write(run.join("run.json"), "{}").unwrap();
        assert_eq!(check_fresh(&run, false).unwrap().len(), 3);
        prepare_fresh(&run, false).unwrap();
        assert!(entries(&run).unwrap().is_empty());
        // Weights (trained or imported) or a result: a run that got somewhere, refused.
        for got in ["checkpoints/best.bpk", "eval.json"] {
            std::fs::create_dir_all(run.join("checkpoints")).unwrap();
            std::fs::write(run.join(got), "{}").unwrap();
            assert!(
                matches!(
                    check_fresh(&run, false),
                    Err(ProtocolError::NotEmpty { .. })
                ),
                "{got}"
            );
            std::fs::remove_file(run.join(got)).unwrap();
        }
    }

    #[test]
    fn a_failed_write_keeps_its_io_error_as_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("eval.json");
        let e = write_atomic(&path, "{}").unwrap_err();
        assert!(e.to_string().starts_with("cannot write"), "{e}");
        let source = std::error::Error::source(&e).expect("the cause is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_locked_folder_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let lock = FolderLock::acquire(&run).unwrap();
        let e = FolderLock::acquire(&run).unwrap_err();
        assert!(
            matches!(&e, ProtocolError::Locked { holder: Some(pid), .. } if *pid == std::process::id()),
            "{e}"
        );
        assert!(e.to_string().contains("run"), "{e}");
        // Seen without taking it, where /proc/locks exists.
        if std::path::Path::new("/proc/locks").exists() {
            assert_eq!(FolderLock::is_held(&run), Some(true));
        }
        drop(lock);
        if std::path::Path::new("/proc/locks").exists() {
            assert_eq!(FolderLock::is_held(&run), Some(false));
        }
        assert_eq!(FolderLock::is_held(&dir.path().join("none")), None);
        FolderLock::acquire(&run).unwrap();
    }

    #[test]
    fn earlier_runs_are_refused_or_removed_and_foreign_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        prepare_fresh(&run, false).unwrap();
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("eval.json"), "{}").unwrap();
        std::fs::write(run.join(LOCK_FILE), "1").unwrap();
        let e = prepare_fresh(&run, false).unwrap_err();
        assert!(
            matches!(&e, ProtocolError::NotEmpty { entries, foreign: false, .. }
                if entries == &["checkpoints".to_string(), "eval.json".to_string()]),
            "{e}"
        );
        assert!(e.to_string().contains("--overwrite"), "{e}");
        prepare_fresh(&run, true).unwrap();
        assert_eq!(entries(&run).unwrap(), Vec::<String>::new());
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        std::fs::write(run.join("eval.json"), "{}").unwrap();
        let e = prepare_fresh(&run, true).unwrap_err();
        assert!(
            matches!(e, ProtocolError::NotEmpty { foreign: true, .. }),
            "{e}"
        );
        assert!(run.join("notes.txt").exists() && run.join("eval.json").exists());
        let aside = aside_name(&run);
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("run.replaced-")
        );
    }
}
