//! Single-stream compressors: gzip, bzip2, xz. One member, named after the gzip header's
//! file name when there is one.

use super::{Entry, UnpackError, member, read_bounded};
use crate::limits::Budget;

pub fn gzip(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    budget.entry()?;
    let decoder = flate2::read::MultiGzDecoder::new(data);
    let name = decoder
        .header()
        .and_then(|h| h.filename())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| "gzip content".into());
    let read = read_bounded(decoder, budget, Some(data.len() as u64));
    Ok(vec![member(name, "Gzip", read)?])
}

pub fn bzip2(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    budget.entry()?;
    let read = read_bounded(bzip2::read::MultiBzDecoder::new(data), budget, Some(data.len() as u64));
    Ok(vec![member("bzip2 content".into(), "Bzip2", read)?])
}

pub fn xz(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    budget.entry()?;
    let reader = lzma_rust2::XzReader::new_mem_limit(data, true, 256 * 1024);
    let read = read_bounded(reader, budget, Some(data.len() as u64));
    Ok(vec![member("xz content".into(), "Xz", read)?])
}
