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
    /// PE32+ (64-bit).
    pub pe32plus: bool,
    /// The import directory (virtual address, size), if the header has one.
    pub imports: Option<(u32, u32)>,
    /// Size of the headers, rounded up to the section alignment.
    hdr_size: u32,
    /// Size of the file.
    fsize: u32,
}

/// Most import descriptors read (libclamav's `PE_MAXIMPORTS`).
const MAX_IMPORTS: usize = 1024;
/// Work allowed to read an import table, in sections looked at to map addresses (a hostile
/// file may have 65,535 sections and millions of imports; libclamav reads them all).
const IMPORT_BUDGET: u64 = 20_000_000;
/// Longest DLL or function name read (libclamav's `PE_MAXNAMESIZE`).
const MAX_NAME: usize = 256;

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
    let pe32plus = opt32.magic.get(LE) == 0x20b;
    let (vep, hdr_size, salign, falign, ndirs, fixed) = if pe32plus {
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
    let dir = |i: usize| -> Option<(u32, u32)> {
        let at = opt_at + fixed + i * 8;
        let d = data.get(at..at + 8)?;
        Some((u32::from_le_bytes(d[..4].try_into().ok()?), u32::from_le_bytes(d[4..].try_into().ok()?)))
    };
    let imports = if ndirs.min(16) > 1 { dir(1) } else { None };
    Some(PeInfo { ep, sections, pe32plus, imports, hdr_size, fsize })
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// A NUL-terminated name at `at`, of at most `MAX_NAME` bytes and what is left of the file.
fn name_at(data: &[u8], at: usize) -> &[u8] {
    let field = &data[at.min(data.len())..(at.saturating_add(MAX_NAME)).min(data.len())];
    &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())]
}

impl PeInfo {
    /// Where the data appended after the sections begins (libclamav's overlay: the end of the
    /// section reaching furthest in memory, by its size in the file), if any is left.
    pub fn overlay_start(&self) -> Option<u32> {
        let last = self.sections.iter().filter(|s| s.rsz != 0).max_by_key(|s| u64::from(s.rva) + u64::from(s.rsz))?;
        let start = last.raw.checked_add(last.rsz)?;
        (start < self.fsize).then_some(start)
    }

    /// The layout of another kind of executable (ELF): an entry point and sections, no
    /// import table.
    pub(crate) fn from_layout(ep: u32, sections: Vec<Section>) -> PeInfo {
        PeInfo { ep, sections, pe32plus: false, imports: None, hdr_size: 0, fsize: 0 }
    }

    /// The text libclamav hashes for an import table hash (`.imp`): `dll.function` for every
    /// import, lower-cased, joined by commas, the DLL name without a `.dll`, `.ocx` or `.sys`
    /// extension, an import by ordinal as `ordN`. `None` where libclamav computes none: a
    /// PE32+ file, no import directory, or a malformed table. (libclamav names some ordinals
    /// of `ws2_32.dll`, `wsock32.dll` and `oleaut32.dll` from a table of its own; they are
    /// `ordN` here.)
    pub fn import_table(&self, data: &[u8]) -> Option<Vec<u8>> {
        if self.pe32plus {
            return None;
        }
        let (va, size) = self.imports.filter(|&(va, size)| va != 0 && size != 0)?;
        let fsize = self.fsize as usize;
        let at = self.raw(va)? as usize;
        if at + size as usize > fsize {
            return None;
        }
        let mut out = Vec::new();
        let (mut left, mut pos) = (size as usize, at);
        let per_lookup = self.sections.len() as u64 + 1;
        let mut budget = IMPORT_BUDGET;
        let mut raw = |rva: u32| -> Option<Option<u32>> {
            budget = budget.checked_sub(per_lookup)?;
            Some(self.raw(rva))
        };
        for _ in 0..MAX_IMPORTS {
            if left <= 20 {
                break;
            }
            let field = |k: usize| u32_at(data, pos + 4 * k);
            let (original_first, name, first) = (field(0)?, field(3)?, field(4)?);
            if name == 0 {
                break;
            }
            left -= 20;
            pos += 20;
            let name_off = raw(name)?? as usize;
            if name_off >= fsize {
                return None;
            }
            let dll = name_at(data, name_off);
            let ext = dll.iter().position(|&b| b == b'.');
            let stem = match ext {
                Some(e)
                    if dll.len() >= e + 4
                        && [&b".ocx"[..], b".sys", b".dll"].iter().any(|x| dll[e..e + 4].eq_ignore_ascii_case(x)) =>
                {
                    &dll[..e]
                }
                _ => dll,
            };
            let by_original = if original_first != 0 { raw(original_first)? } else { None };
            let mut thunk = match by_original {
                Some(t) if t != 0 => t as usize,
                _ => raw(first)?? as usize,
            };
            while let Some(t) = u32_at(data, thunk).filter(|&t| t != 0) {
                thunk += 4;
                let func: Vec<u8> = if t & 0x8000_0000 == 0 {
                    // (libclamav reads from the start of the file when the address maps nowhere,
                    // and reads nothing within the last 256 bytes of the file)
                    let off = raw(t)?.unwrap_or(0) as usize;
                    if off >= fsize || off + 2 + MAX_NAME.min(fsize - off) > fsize {
                        continue;
                    }
                    name_at(data, off + 2).to_vec()
                } else {
                    format!("ord{}", t & 0xffff).into_bytes()
                };
                if !func.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
                    return None;
                }
                if !out.is_empty() {
                    out.push(b',');
                }
                out.extend(stem.iter().chain(b".").chain(func.iter()).map(u8::to_ascii_lowercase));
            }
        }
        Some(out)
    }

    /// The file offset of virtual address `rva` (libclamav's `cli_rawaddr`).
    fn raw(&self, rva: u32) -> Option<u32> {
        raw_address(rva, &self.sections, self.hdr_size, self.fsize)
    }
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

    /// An import table that would take libclamav millions of steps (thousands of sections, an
    /// endless list of imports) gives no hash here, quickly.
    #[test]
    fn a_hostile_import_table_is_bounded() {
        let n = 4000u32;
        let data_at = 0x2_8000u32;
        let sections: Vec<(u32, u32, u32, u32)> = (0..n).map(|i| (0x1000 * (i + 1), 0x1000, data_at, 0x200)).collect();
        let mut pe = build(0x1000, 0x200, &sections, 0x40_0000);
        // the import directory in the first section: one descriptor (named by its own bytes)
        // whose thunks map nowhere, until the end of the file
        let opt = 0x84 + 20;
        pe[opt + 96 + 8..opt + 96 + 12].copy_from_slice(&0x1000u32.to_le_bytes());
        pe[opt + 96 + 12..opt + 96 + 16].copy_from_slice(&40u32.to_le_bytes());
        let desc = data_at as usize;
        pe[desc + 12..desc + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        pe[desc + 16..desc + 20].copy_from_slice(&0x1100u32.to_le_bytes());
        for at in (desc + 0x100..pe.len() - 4).step_by(4) {
            pe[at..at + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        }
        let info = parse(&pe).unwrap();
        assert_eq!(info.sections.len(), n as usize);
        assert_eq!(info.import_table(&pe), None);
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
