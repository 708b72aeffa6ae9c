//! Files that may be gzip-compressed, recognised by their content rather than their name.

use crate::error::{DataError, Result};
use flate2::read::GzDecoder;
use std::io::{BufReader, Read};
use std::path::Path;

/// The first two bytes of a gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path`, decompressing it when it starts with the gzip magic; the file's length is
/// returned for uncompressed files (compressed ones have no length known in advance).
pub(crate) fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let (file, len) = crate::files::open_regular(path).map_err(|e| DataError::io(path, e))?;
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut r, &mut magic).map_err(|e| DataError::io(path, e))?;
    let prefix = std::io::Cursor::new(magic[..n].to_vec());
    if n == 2 && magic == GZIP_MAGIC {
        Ok((Box::new(GzDecoder::new(prefix.chain(r))), None))
    } else {
        Ok((Box::new(prefix.chain(r)), Some(len)))
    }
}

/// Reads until `buf` is full or the stream ends (retrying interrupted reads); the number of
/// bytes read.
pub(crate) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
