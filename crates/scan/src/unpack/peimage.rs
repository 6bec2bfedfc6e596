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

/// A section of an executable [`build`] makes: its address and size in memory and its bytes.
pub(super) struct Built<'a> {
    pub rva: usize,
    pub vsize: usize,
    pub data: &'a [u8],
}

/// A parsable (not runnable) 32-bit executable made of `sections`, laid out one after the
/// other in the file, each padded to 512 bytes, as libclamav's `cli_rebuildpe` lays out what
/// an unpacker gives it (so that what the original file ended with ends this one too). `None`
/// when a field does not fit in 32 bits.
pub(super) fn build(sections: &[Built<'_>], entry: usize, base: usize) -> Option<Vec<u8>> {
    const PE: usize = 0x40;
    const OPT: usize = 0xe0;
    let table = PE + 24 + OPT;
    let headers = (table + 40 * sections.len()).next_multiple_of(0x200);
    let size = headers + sections.iter().map(|s| s.data.len().next_multiple_of(0x200)).sum::<usize>();
    let mut f = vec![0u8; size];
    f[..2].copy_from_slice(b"MZ");
    put32(&mut f, 0x3c, PE)?;
    f[PE..PE + 4].copy_from_slice(b"PE\0\0");
    f[PE + 4..PE + 6].copy_from_slice(&0x14cu16.to_le_bytes());
    f[PE + 6..PE + 8].copy_from_slice(&u16::try_from(sections.len()).ok()?.to_le_bytes());
    f[PE + 20..PE + 22].copy_from_slice(&(OPT as u16).to_le_bytes());
    f[PE + 22..PE + 24].copy_from_slice(&0x10fu16.to_le_bytes());
    f[PE + 24..PE + 26].copy_from_slice(&0x10bu16.to_le_bytes());
    let image_end = sections.iter().map(|s| s.rva.saturating_add(s.vsize.next_multiple_of(0x1000))).max().unwrap_or(0);
    for (at, v) in
        [(0x28, entry), (0x34, base), (0x38, 0x1000), (0x3c, 0x200), (0x50, image_end), (0x54, headers), (0x74, 16)]
    {
        put32(&mut f, PE + at, v)?;
    }
    let mut raw = headers;
    for (i, s) in sections.iter().enumerate() {
        let h = table + i * 40;
        let name = format!(".clam{:02}", (i + 1) % 100);
        f[h..h + name.len()].copy_from_slice(name.as_bytes());
        for (at, v) in [(8, s.vsize), (12, s.rva), (16, s.data.len()), (20, raw), (36, 0xffff_ffff)] {
            put32(&mut f, h + at, v)?;
        }
        f[raw..raw + s.data.len()].copy_from_slice(s.data);
        raw += s.data.len().next_multiple_of(0x200);
    }
    Some(f)
}

/// A section as libclamav keeps it: address and size in memory (aligned to the section
/// alignment), place and size in the file (aligned to the file alignment, cut at the end of
/// the file).
#[derive(Clone, Copy, Debug)]
pub(super) struct Sect {
    pub rva: usize,
    pub vsize: usize,
    pub raw: usize,
    pub rsize: usize,
}

/// The parsed header and the sections of `data` as libclamav's unpackers see them.
pub(super) fn clam_sections(data: &[u8]) -> Option<(crate::pe::PeInfo, Vec<Sect>)> {
    let info = crate::pe::parse(data)?;
    let pe = le32(data, 0x3c)?;
    let (headers, _) = sections(data, pe, 96)?;
    let salign = le32(data, pe + 24 + 32)?;
    if headers.len() != info.sections.len() {
        return None;
    }
    let up = |v: usize| if salign.is_power_of_two() { v.next_multiple_of(salign) } else { v };
    let secs = info
        .sections
        .iter()
        .zip(&headers)
        .map(|(s, h)| Sect {
            rva: s.rva as usize,
            vsize: if h.vsize == 0 && s.rsz != 0 { up(h.rsize) } else { up(h.vsize) },
            raw: s.raw as usize,
            rsize: s.rsz as usize,
        })
        .collect();
    Some((info, secs))
}

/// The headers and each section where it is in memory (sizes rounded up to `align`), charged
/// to the budget; `None` if a section does not fit the image its headers describe or the image
/// is larger than the budget left.
pub(super) fn load(
    data: &[u8],
    secs: &[Section],
    align: usize,
    budget: &mut crate::limits::Budget,
) -> Result<Option<Vec<u8>>, super::UnpackError> {
    let size = secs.iter().map(|s| s.rva.saturating_add(s.vsize.max(s.rsize).next_multiple_of(align))).max();
    let head = secs.iter().map(|s| s.raw).filter(|&r| r != 0).min().unwrap_or(0).min(data.len());
    let Some(size) = size.filter(|&s| s > head && s as u64 <= budget.remaining()) else { return Ok(None) };
    budget.spend(size as u64)?;
    let mut image = vec![0u8; size];
    image[..head].copy_from_slice(&data[..head]);
    for s in secs.iter().filter(|s| s.rsize != 0) {
        let Some(bytes) = data.get(s.raw..s.raw.saturating_add(s.rsize).min(data.len())) else { return Ok(None) };
        let Some(place) = image.get_mut(s.rva..s.rva.saturating_add(bytes.len())) else { return Ok(None) };
        place.copy_from_slice(bytes);
    }
    Ok(Some(image))
}

/// A test executable of `size` bytes: `MZ`, the PE header at `pe` (i386, a 0xe0-byte optional
/// header), the optional-header `fields` (offset from the `PE` signature, value) and the
/// `sections` (name, virtual size, address, size in the file, place in the file).
#[cfg(test)]
pub(super) fn test_exe(
    size: usize,
    pe: usize,
    fields: &[(usize, usize)],
    sections: &[(&[u8], usize, usize, usize, usize)],
) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..2].copy_from_slice(b"MZ");
    put32(&mut f, 0x3c, pe).unwrap();
    f[pe..pe + 4].copy_from_slice(b"PE\0\0");
    f[pe + 4..pe + 6].copy_from_slice(&0x14cu16.to_le_bytes());
    f[pe + 6..pe + 8].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    f[pe + 20..pe + 22].copy_from_slice(&0xe0u16.to_le_bytes());
    f[pe + 24..pe + 26].copy_from_slice(&0x10bu16.to_le_bytes());
    for &(at, v) in fields {
        put32(&mut f, pe + at, v).unwrap();
    }
    let table = pe + 24 + 0xe0;
    for (i, &(name, vsize, rva, rsize, raw)) in sections.iter().enumerate() {
        let h = table + i * 40;
        f[h..h + name.len()].copy_from_slice(name);
        for (at, v) in [(8, vsize), (12, rva), (16, rsize), (20, raw)] {
            put32(&mut f, h + at, v).unwrap();
        }
    }
    f
}
