//! Reading a user's files safely: only regular files (a device such as `/dev/zero`, a FIFO, a
//! socket or a folder is refused before it is opened, so nothing blocks or grows without end),
//! and never more bytes than the file's size when it was opened.

use std::fs::File;
use std::io::{Error, ErrorKind, Read, Result};
use std::path::Path;

/// Opens the regular file at `path` (symbolic links followed) and returns it with its size; any
/// other kind of file is an [`ErrorKind::InvalidInput`] error saying what it is.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = match () {
            _ if kind.is_dir() => "a folder",
            _ => "not a regular file (a device, a FIFO or a socket)",
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what}: mmssl reads only regular files"),
        ));
    }
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// The bytes of the regular file at `path`, at most its size when opened.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The text of the regular file at `path` (UTF-8), at most its size when opened.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_never_past_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "héllo").unwrap();
        assert_eq!(read_text(&f).unwrap(), "héllo");
        assert_eq!(read_bytes(&f).unwrap().len(), 6);
        let e = read_bytes(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a folder"), "{e}");
        #[cfg(unix)]
        {
            let e = read_bytes(Path::new("/dev/zero")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                // Refused before opening: opening a FIFO without a writer would block.
                assert!(read_text(&fifo).is_err());
            }
        }
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert_eq!(read_text(&f).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(
            read_bytes(&dir.path().join("missing")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
