//! What PE-aware signatures need of a Windows executable, computed as libclamav computes it:
//! the entry point's file offset (`EP+n`), each section's file offset and size (`Sx+n`, `SEx`,
//! `SL+n`, section hashes `.mdb`/`.msb`) and the number of sections.
//!
//! The header structures are read with the `object` crate's PE definitions; the derived values
//! follow libclamav's rules, which differ from the loader's in ways signatures depend on:
//! section file offsets are rounded down and raw sizes up to the file alignment (512 when a
//! section's offset is not aligned to the declared one but is to 512), virtual addresses to
//! the section alignment; a section starting beyond the end of the file has no raw size and one
//! running past it is cut; the entry point is found in the last section that holds it, or in
//! the headers.

use object::LittleEndian as LE;
use object::pe::{ImageDosHeader, ImageFileHeader, ImageOptionalHeader32, ImageOptionalHeader64, ImageSectionHeader};
use object::pod::from_bytes;

/// One section, as libclamav sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Virtual address, rounded down to the section alignment.
    pub rva: u32,
    /// File offset, rounded down to the file alignment.
    pub raw: u32,
    /// Size in the file, rounded up to the file alignment and cut at the end of the file
    /// (0: not in the file).
    pub rsz: u32,
}

/// A parsed PE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeInfo {
    /// File offset of the entry point.
    pub ep: u32,
    /// The sections, in header order.
    pub sections: Vec<Section>,
}

/// Rounds `o` down to a multiple of `a` (unchanged when `a` is 0).
fn align_down(o: u32, a: u32) -> u32 {
    o.checked_div(a).map_or(o, |q| q * a)
}

/// Rounds `o` up to a multiple of `a` (unchanged when `a` is 0).
fn align_up(o: u32, a: u32) -> u32 {
    o.checked_div(a).map_or(o, |q| (q + u32::from(!o.is_multiple_of(a))).wrapping_mul(a))
}

fn read<T: object::pod::Pod>(data: &[u8], at: usize) -> Option<&T> {
    from_bytes::<T>(data.get(at..)?).ok().map(|(t, _)| t)
}

/// Parses `data` as a PE file; `None` when it is not one libclamav would accept (then, in
/// libclamav, no offset relative to the file's layout matches — not even `EOF-n`).
pub fn parse(data: &[u8]) -> Option<PeInfo> {
    let dos: &ImageDosHeader = read(data, 0)?;
    if !matches!(&data[..2], b"MZ" | b"ZM") {
        return None;
    }
    let lfanew = dos.e_lfanew.get(LE) as usize;
    if lfanew == 0 || data.get(lfanew..lfanew + 4)? != b"PE\0\0" {
        return None;
    }
    let file: &ImageFileHeader = read(data, lfanew + 4)?;
    let nsections = file.number_of_sections.get(LE);
    let opt_size = usize::from(file.size_of_optional_header.get(LE));
    let opt_at = lfanew + 4 + size_of::<ImageFileHeader>();
    if nsections == 0 || opt_size < size_of::<ImageOptionalHeader32>() {
        return None;
    }
    let opt32: &ImageOptionalHeader32 = read(data, opt_at)?;
    let (vep, hdr_size, salign, falign, ndirs, fixed) = if opt32.magic.get(LE) == 0x20b {
        if opt_size < size_of::<ImageOptionalHeader64>() {
            return None;
        }
        let o: &ImageOptionalHeader64 = read(data, opt_at)?;
        let fields = (o.address_of_entry_point, o.size_of_headers, o.section_alignment, o.file_alignment);
        let n = o.number_of_rva_and_sizes.get(LE);
        (fields.0.get(LE), fields.1.get(LE), fields.2.get(LE), fields.3.get(LE), n, size_of::<ImageOptionalHeader64>())
    } else {
        let o = opt32;
        let fields = (o.address_of_entry_point, o.size_of_headers, o.section_alignment, o.file_alignment);
        let n = o.number_of_rva_and_sizes.get(LE);
        (fields.0.get(LE), fields.1.get(LE), fields.2.get(LE), fields.3.get(LE), n, size_of::<ImageOptionalHeader32>())
    };
    // the data directories must fit in the optional header and be in the file
    let dirs_size = ndirs.min(16) as usize * 8;
    if opt_size < fixed + dirs_size || data.len() < opt_at + fixed + dirs_size {
        return None;
    }
    let hdr_size = align_up(hdr_size, salign);
    let headers_at = opt_at + opt_size;
    let headers: Vec<&ImageSectionHeader> = (0..usize::from(nsections))
        .map(|i| read(data, headers_at + i * size_of::<ImageSectionHeader>()))
        .collect::<Option<_>>()?;
    let mut falign = falign;
    if falign != 0x200
        && headers.iter().any(|h| {
            let (ptr, size) = (h.pointer_to_raw_data.get(LE), h.size_of_raw_data.get(LE));
            falign != 0 && size != 0 && ptr % falign != 0 && ptr % 0x200 == 0
        })
    {
        falign = 0x200;
    }
    let fsize = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut sections = Vec::with_capacity(headers.len());
    for h in headers {
        let (uva, uvs) = (h.virtual_address.get(LE), h.virtual_size.get(LE));
        let (uraw, mut ursz) = (h.pointer_to_raw_data.get(LE), h.size_of_raw_data.get(LE));
        let raw = align_down(uraw, falign);
        let mut rsz = align_up(ursz, falign);
        if rsz != 0 {
            if raw >= fsize || uraw >= fsize {
                rsz = 0;
                ursz = 0;
            } else {
                if u64::from(raw) + u64::from(rsz) > u64::from(fsize) {
                    rsz = fsize - raw;
                }
                if u64::from(uraw) + u64::from(ursz) > u64::from(fsize) {
                    ursz = fsize - uraw;
                }
            }
        }
        if uva >> 31 != 0 || uvs >> 31 != 0 || (rsz != 0 && uraw >> 31 != 0) || ursz >> 31 != 0 {
            return None;
        }
        sections.push(Section { rva: align_down(uva, salign), raw, rsz });
    }
    let ep = raw_address(vep, &sections, hdr_size, fsize)?;
    Some(PeInfo { ep, sections })
}

/// The file offset of virtual address `rva`: itself inside the headers, else through the last
/// section that holds it.
fn raw_address(rva: u32, sections: &[Section], hdr_size: u32, fsize: u32) -> Option<u32> {
    if rva < hdr_size {
        return (rva < fsize).then_some(rva);
    }
    sections
        .iter()
        .rev()
        .find(|s| s.rsz != 0 && s.rva <= rva && s.rsz > rva - s.rva)
        .map(|s| (rva - s.rva).wrapping_add(s.raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32: headers of 0x200 bytes, sections as given (name, rva, vsize, raw ptr,
    /// raw size), entry point `ep`, file alignment `falign`, `len` bytes in all.
    fn build(ep: u32, falign: u32, sections: &[(u32, u32, u32, u32)], len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(0x200)];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        let f = 0x84;
        d[f..f + 2].copy_from_slice(&0x14cu16.to_le_bytes());
        d[f + 2..f + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        d[f + 16..f + 18].copy_from_slice(&0xe0u16.to_le_bytes());
        d[f + 18..f + 20].copy_from_slice(&0x102u16.to_le_bytes());
        let o = f + 20;
        d[o..o + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        d[o + 16..o + 20].copy_from_slice(&ep.to_le_bytes());
        d[o + 32..o + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        d[o + 36..o + 40].copy_from_slice(&falign.to_le_bytes());
        d[o + 60..o + 64].copy_from_slice(&0x200u32.to_le_bytes());
        d[o + 92..o + 96].copy_from_slice(&16u32.to_le_bytes());
        let mut s = o + 0xe0;
        for &(rva, vsz, raw, rsz) in sections {
            d[s..s + 8].copy_from_slice(b".text\0\0\0");
            d[s + 8..s + 12].copy_from_slice(&vsz.to_le_bytes());
            d[s + 12..s + 16].copy_from_slice(&rva.to_le_bytes());
            d[s + 16..s + 20].copy_from_slice(&rsz.to_le_bytes());
            d[s + 20..s + 24].copy_from_slice(&raw.to_le_bytes());
            s += 40;
        }
        d.truncate(len);
        d
    }

    #[test]
    fn entry_point_and_sections_as_libclamav_computes_them() {
        let pe = build(0x1010, 0x200, &[(0x1000, 0x100, 0x200, 0x100), (0x2000, 0x100, 0x400, 0x100)], 0x600);
        let info = parse(&pe).unwrap();
        assert_eq!(info.ep, 0x210);
        assert_eq!(info.sections[0], Section { rva: 0x1000, raw: 0x200, rsz: 0x200 });
        assert_eq!(info.sections[1], Section { rva: 0x2000, raw: 0x400, rsz: 0x200 });
        // a section running past the end of the file is cut; one beyond it has no raw size
        let pe = build(0x1010, 0x200, &[(0x1000, 0x100, 0x200, 0x400), (0x2000, 0x100, 0x800, 0x100)], 0x300);
        let info = parse(&pe).unwrap();
        assert_eq!((info.sections[0].rsz, info.sections[1].rsz), (0x100, 0));
        // an entry point in the headers is its own offset; outside every section, no PE
        assert_eq!(parse(&build(0x40, 0x200, &[(0x1000, 0x100, 0x200, 0x100)], 0x400)).unwrap().ep, 0x40);
        assert_eq!(parse(&build(0x5000, 0x200, &[(0x1000, 0x100, 0x200, 0x100)], 0x400)), None);
    }

    #[test]
    fn misaligned_offsets_fall_back_to_512() {
        // declared alignment 0x1000, but a section at 0x200: libclamav aligns to 0x200
        let pe = build(0x1000, 0x1000, &[(0x1000, 0x100, 0x200, 0x100)], 0x400);
        assert_eq!(parse(&pe).unwrap().sections[0], Section { rva: 0x1000, raw: 0x200, rsz: 0x200 });
    }

    #[test]
    fn not_pe() {
        assert_eq!(parse(b"MZ"), None);
        assert_eq!(parse(b"MZ\0\0junk"), None);
        assert_eq!(parse(&[0u8; 0x400]), None);
        let mut no_sections = build(0x1000, 0x200, &[(0x1000, 0x100, 0x200, 0x100)], 0x400);
        no_sections[0x86] = 0;
        assert_eq!(parse(&no_sections), None);
    }
}
