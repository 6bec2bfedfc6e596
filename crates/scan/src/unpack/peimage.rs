//! The few fields of a PE header the executable unpackers need: little-endian reads and the
//! section table as the header gives it (no alignment applied).

pub(super) fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

pub(super) fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Writes `v` as a 32-bit little-endian field at `at`; `None` if it does not fit there or in 32 bits.
pub(super) fn put32(d: &mut [u8], at: usize, v: usize) -> Option<()> {
    d.get_mut(at..at.checked_add(4)?)?.copy_from_slice(&u32::try_from(v).ok()?.to_le_bytes());
    Some(())
}

/// A section header: virtual size, address, size and offset in the file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section {
    pub vsize: usize,
    pub rva: usize,
    pub rsize: usize,
    pub raw: usize,
}

/// The section headers of the PE header at `pe` (the `PE\0\0` signature) in `d`, and the
/// optional header's size.
pub(super) fn sections(d: &[u8], pe: usize, max: usize) -> Option<(Vec<Section>, usize)> {
    let n = le16(d, pe + 6)?;
    let opt = le16(d, pe + 20)?;
    if n == 0 || n > max || opt < 0xe0 {
        return None;
    }
    let table = pe + 24 + opt;
    let s = (0..n)
        .map(|i| {
            let h = table + i * 40;
            Some(Section {
                vsize: le32(d, h + 8)?,
                rva: le32(d, h + 12)?,
                rsize: le32(d, h + 16)?,
                raw: le32(d, h + 20)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((s, opt))
}
