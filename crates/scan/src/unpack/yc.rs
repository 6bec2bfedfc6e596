//! yC 1.x-encrypted Windows executables (issue 17). yC (yoda's Crypter) adds a last section
//! whose code, 0x60 bytes in, is the entry point; it encrypts the other sections (not the
//! resources, relocations, imports, exports, TLS or read-only data) byte by byte with a
//! polymorphic decryptor — a short run of one-byte-register instructions (`add`, `sub`, `xor`
//! with a constant or the count register, `dec`, `rol`/`ror`, jumps, no-ops) applied to each
//! byte, the counter decreasing with every byte — and encrypts the second such decryptor with a
//! first one. libclamav undoes it by running those instructions itself: the first decryptor over
//! the second, the second over each section; the executable is then given back without the yC
//! section, with its import directory cleared and its original entry point. What is inside is
//! then opened as usual (the test file is UPX-packed under yC). Done from that description, the
//! three entry-code variants libclamav knows told apart the same way; bounded by the file, the
//! budget and a limit on the decryptor's jumps.

use super::UnpackError;
use super::peimage::{clam_sections, le16, le32, put32, sections};
use crate::limits::{Budget, Limit};

/// Jumps a decryptor may take for one byte before it counts as a loop (libclamav allows
/// 100,000,000 in all).
const MAX_JUMPS_PER_BYTE: u32 = 256;
/// Instructions a decryptor runs per byte (its code is at most 0x30 bytes).
const DECRYPTOR_LEN: u32 = 0x30;

/// The decrypted executable, if `data` is encrypted by yC 1.x and decrypts; `Ok(None)` when it is
/// not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some((info, secs)) = clam_sections(data) else { return Ok(None) };
    let Some(pe) = le32(data, 0x3c) else { return Ok(None) };
    let Some((headers, opt)) = sections(data, pe, 96) else { return Ok(None) };
    let n = secs.len();
    if n < 2 {
        return Ok(None);
    }
    let yc = secs[n - 1];
    if le32(data, pe + 0x28) != Some(yc.rva + 0x60) {
        return Ok(None);
    }
    let Some(code) = data.get(info.ep as usize..) else { return Ok(None) };
    let Some((count, offset)) = variant(code) else { return Ok(None) };
    if !(0x801..0x2000).contains(&count)
        || code.get((0x63 + offset) as usize..(0x66 + offset) as usize) != Some(b"\xaa\xe2\xcc")
    {
        return Ok(None);
    }
    let Some(base) = (yc.raw as i64).checked_add(offset).filter(|&b| b >= 0).map(|b| b as usize) else {
        return Ok(None);
    };
    if data.len() < base + 0xc6 + count as usize {
        return Ok(None);
    }
    budget.spend(data.len() as u64)?;
    let mut file = data.to_vec();
    // the first decryptor over the second one
    if !run(&mut file, base + 0x93, base + 0xc6, count, count as usize, budget)? {
        return Ok(None);
    }
    // the file without the yC section's data (yC puts it last)
    let yc_raw_size = header_raw_size(&headers[n - 1], data.len());
    let end = data.len() - yc_raw_size.min(data.len());
    let second = base + if offset == -0x18 { 0x3ea } else { 0x457 };
    let table = pe + 24 + opt;
    for (i, (s, h)) in secs[..n - 1].iter().zip(&headers).enumerate() {
        budget.check_time()?;
        let name = le32(data, table + i * 40).unwrap_or(0) as u32;
        if s.raw == 0 || s.rsize == 0 || SKIPPED.contains(&name) || name & 0xffff == 0x4379 {
            continue;
        }
        let Some(max) = end.checked_sub(s.raw) else { return Ok(None) };
        let len = header_raw_size(h, data.len());
        if !run(&mut file, second, s.raw, len as u32, max, budget)? {
            return Ok(None);
        }
    }
    // the original entry point, kept in the (decrypted) yC section
    let oep = le32(&file, base + 0xa0f);
    file.truncate(end);
    let image_size = le32(&file, pe + 24 + 0x38).map(|v| v.wrapping_sub(yc.vsize));
    let (Some(image_size), Some(oep)) = (image_size, oep) else { return Ok(None) };
    let Some(count_field) = file.get_mut(pe + 6..pe + 8) else { return Ok(None) };
    count_field.copy_from_slice(&((n - 1) as u16).to_le_bytes());
    for (at, v) in
        [(pe + 24 + 0x68, 0), (pe + 24 + 0x6c, 0), (pe + 24 + 16, oep), (pe + 24 + 0x38, image_size & 0xffff_ffff)]
    {
        if put32(&mut file, at, v).is_none() {
            return Ok(None);
        }
    }
    Ok(Some(file))
}

/// Sections yC leaves as they are, by the first four bytes of their names.
const SKIPPED: [u32; 8] = [
    u32::from_le_bytes(*b"rsrc"),
    u32::from_le_bytes(*b".rsr"),
    u32::from_le_bytes(*b"relo"),
    u32::from_le_bytes(*b".rel"),
    u32::from_le_bytes(*b".eda"),
    u32::from_le_bytes(*b".rda"),
    u32::from_le_bytes(*b".ida"),
    u32::from_le_bytes(*b".tls"),
];

/// A section's size in the file as its header gives it, cut at the end of the file.
fn header_raw_size(h: &super::peimage::Section, len: usize) -> usize {
    if h.raw >= len { 0 } else { h.rsize.min(len - h.raw) }
}

/// Which of the entry-code variants libclamav knows this is: the first decryptor's byte count
/// and the variant's shift of the loader's layout.
fn variant(code: &[u8]) -> Option<(u32, i64)> {
    let at = |k: usize, bytes: &[u8]| code.get(k..k + bytes.len()) == Some(bytes);
    let word = |k: usize| le32(code, k).map(|v| v as u32);
    // yC 1.3
    if at(0, b"\x55\x8b\xec\x53\x56\x57\x60\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && at(0x26, b"\x8d\x3a\x8b\xf7\x33\xc0\xeb\x04\x90\xeb\x01\xc2\xac")
        && code.get(0x13) == Some(&0xb9)
        && le16(code, 0x18) == Some(0xe981)
        && at(0x1e, b"\x8b\xd5\x81\xc2")
        && 0x6cu32.wrapping_sub(word(0xf)?).wrapping_add(word(0x22)?) == 0xc6
    {
        return Some((word(0x14)?.wrapping_sub(word(0x1a)?), 0));
    }
    // a variant of 1.3
    if at(0, b"\x55\x8b\xec\x83\xec\x40\x53\x56\x57")
        && at(0x17, b"\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && code.get(0x23) == Some(&0xb9)
        && 0x6cu32.wrapping_sub(word(0x1f)?).wrapping_add(word(0x32)?) == 0xc6
    {
        return Some((word(0x24)?.wrapping_sub(word(0x2a)?), 0x10));
    }
    // 1.x, modified
    if at(0, b"\x60\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && code.get(0xd) == Some(&0xb9)
        && le16(code, 0x12) == Some(0xbd8d)
        && at(0x18, b"\x8b\xf7\xac")
        && 0x66u32.wrapping_sub(word(0x9)?).wrapping_add(word(0x14)?) == 0xae
    {
        return Some((word(0xe)?, -0x18));
    }
    None
}

/// Runs the decryptor at `decryptor` over `count` bytes at `at` (at most `max`), the count
/// register starting at `count`'s low byte and decreasing with every byte. `Ok(false)` for an
/// instruction the decryptors do not use, a jump loop, or bytes outside the file; the scan's
/// time limit is checked as it goes.
fn run(file: &mut [u8], decryptor: usize, at: usize, count: u32, max: usize, budget: &Budget) -> Result<bool, Limit> {
    let mut cl = count as u8;
    for i in 0..(count as usize).min(max) {
        if i % (256 * 1024) == 0 {
            budget.check_time()?;
        }
        let Some(&byte) = file.get(at + i) else { return Ok(false) };
        let Some(al) = decrypt_byte(file, decryptor, byte, cl) else { return Ok(false) };
        cl = cl.wrapping_sub(1);
        file[at + i] = al;
    }
    Ok(true)
}

/// One byte through the decryptor's instructions (their index wraps as libclamav's unsigned
/// one does: a jump back past the start ends the run).
fn decrypt_byte(file: &[u8], decryptor: usize, mut al: u8, cl: u8) -> Option<u8> {
    let op = |j: u32| file.get(decryptor.checked_add(j as usize)?).copied();
    let mut j: u32 = 0;
    let mut jumps = 0;
    while j < DECRYPTOR_LEN {
        match op(j)? {
            0xeb => {
                j += 1;
                jumps += 1;
                if jumps > MAX_JUMPS_PER_BYTE {
                    return None;
                }
                // a short jump: a signed displacement
                j = j.wrapping_add(op(j)? as i8 as u32);
            }
            0xfe => {
                al = al.wrapping_sub(1);
                j += 1;
            }
            0x2a => {
                al = al.wrapping_sub(cl);
                j += 1;
            }
            0x02 => {
                al = al.wrapping_add(cl);
                j += 1;
            }
            0x32 => {
                al ^= cl;
                j += 1;
            }
            0x04 => {
                j += 1;
                al = al.wrapping_add(op(j)?);
            }
            0x34 => {
                j += 1;
                al ^= op(j)?;
            }
            0x2c => {
                j += 1;
                al = al.wrapping_sub(op(j)?);
            }
            0xc0 => {
                j += 1;
                let left = op(j)? == 0xc0;
                j += 1;
                let by = u32::from(op(j)?) % 8;
                al = if left { al.rotate_left(by) } else { al.rotate_right(by) };
            }
            0xd2 => {
                // `D2 C8` / `D2 C0`; libclamav's emulator steps once more than the instruction's
                // length, passing over the byte after it, and so does this one
                j += 1;
                let right = op(j)? == 0xc8;
                j += 1;
                let by = u32::from(cl) % 8;
                al = if right { al.rotate_right(by) } else { al.rotate_left(by) };
            }
            0x90 | 0xf8 | 0xf9 => {}
            _ => return None,
        }
        j = j.wrapping_add(1);
    }
    Some(al)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::unpack::peimage::test_exe;

    /// The byte the decryptor turns into `plain` (its instructions are one-to-one).
    fn encrypt_byte(file: &[u8], decryptor: usize, plain: u8, cl: u8) -> u8 {
        (0..=255u8).find(|&e| decrypt_byte(file, decryptor, e, cl) == Some(plain)).expect("a one-to-one decryptor")
    }

    fn encrypt(file: &mut [u8], decryptor: usize, at: usize, count: usize) {
        let mut cl = count as u8;
        for i in 0..count {
            file[at + i] = encrypt_byte(file, decryptor, file[at + i], cl);
            cl = cl.wrapping_sub(1);
        }
    }

    const COUNT: usize = 0x900;

    /// A small executable encrypted as yC 1.x (the variant libclamav calls modified): `.text`
    /// encrypted, `.rsrc` not, the yC section last with its entry code, both decryptors (the
    /// second encrypted by the first) and the original entry point.
    fn encrypted(text: &[u8], dec1: &[u8], dec2: &[u8]) -> Vec<u8> {
        let mut f = test_exe(
            0x1200,
            0x40,
            &[
                (0x28, 0x3060),
                (24 + 32, 0x1000),
                (24 + 36, 0x200),
                (0x50, 0x4000),
                (24 + 0x68, 0x2000),
                (24 + 0x6c, 0x40),
            ],
            &[
                (b".text", 0x1000, 0x1000, 0x200, 0x400),
                (b".rsrc", 0x1000, 0x2000, 0x200, 0x600),
                (b"yC", 0x1000, 0x3000, 0xa00, 0x800),
            ],
        );
        f[0x400..0x400 + text.len()].copy_from_slice(text);
        f[0x600..0x610].copy_from_slice(b"resources stay  ");
        let yc = 0x800;
        let base = yc - 0x18;
        let code = yc + 0x60;
        f[code..code + 9].copy_from_slice(b"\x60\xe8\x00\x00\x00\x00\x5d\x81\xed");
        put32(&mut f, code + 9, 0x40_1000).unwrap();
        f[code + 0xd] = 0xb9;
        put32(&mut f, code + 0xe, COUNT).unwrap();
        f[code + 0x12..code + 0x14].copy_from_slice(&[0x8d, 0xbd]);
        put32(&mut f, code + 0x14, 0x40_1000 + 0x48).unwrap();
        f[code + 0x18..code + 0x1b].copy_from_slice(b"\x8b\xf7\xac");
        f[code + 0x4b..code + 0x4e].copy_from_slice(b"\xaa\xe2\xcc");
        let pad = |d: &[u8]| [d, &vec![0x90; 0x30 - d.len()][..]].concat();
        f[base + 0x93..base + 0xc3].copy_from_slice(&pad(dec1));
        f[base + 0x3ea..base + 0x41a].copy_from_slice(&pad(dec2));
        put32(&mut f, base + 0xa0f, 0x1234).unwrap();
        // encrypt as yC does: the sections with the second decryptor, then the region holding
        // it with the first
        encrypt(&mut f, base + 0x3ea, 0x400, 0x200);
        encrypt(&mut f, base + 0x93, base + 0xc6, COUNT);
        f
    }

    /// Every instruction the decryptors use, and a jump over a byte they do not.
    const DEC1: &[u8] = b"\x32\xc1\x34\x5a\xfe\xc8\x2c\x11";
    /// (after `D2 xx` the next byte is passed over, as libclamav's emulator passes it over)
    const DEC2: &[u8] = b"\x04\x07\xc0\xc0\x03\xd2\xc8\x90\x2a\xc1\xeb\x01\xe9\x02\xc1\xc0\xc8\x02\xd2\xc0\x90\xf8\xf9";

    #[test]
    fn an_encrypted_executable_is_decrypted() {
        let text = b"yC test section, encrypted byte by byte by a polymorphic decryptor".repeat(4);
        let exe = encrypted(&text, DEC1, DEC2);
        assert_ne!(&exe[0x400..0x400 + text.len()], &text[..]);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-yc"), [&[0][..], &exe].concat()).unwrap();
        }
        let out = unpack(&exe, &mut Budget::new(Limits::default())).unwrap().unwrap();
        assert_eq!(out.len(), 0x800, "the yC section's data left out");
        assert_eq!(&out[0x400..0x400 + text.len()], &text[..]);
        assert_eq!(&out[0x600..0x610], b"resources stay  ");
        let pe = 0x40;
        assert_eq!(le16(&out, pe + 6), Some(2));
        assert_eq!(le32(&out, pe + 0x28), Some(0x1234));
        assert_eq!((le32(&out, pe + 24 + 0x68), le32(&out, pe + 24 + 0x6c)), (Some(0), Some(0)));
        assert_eq!(le32(&out, pe + 0x50), Some(0x3000));
        // the whole file is charged
        let tight = Limits { max_expanded: 0x1000, ..Default::default() };
        assert!(matches!(unpack(&exe, &mut Budget::new(tight)), Err(UnpackError::Limit(_))));
        // another entry code: not yC
        let mut other = exe.clone();
        other[0x860] = 0x90;
        assert!(unpack(&other, &mut Budget::new(Limits::default())).unwrap().is_none());
    }

    #[test]
    fn decryptors_that_are_not_yc_s_end_in_bounded_time() {
        let text = b"some code".repeat(10);
        // an instruction the decryptors never use (`mov al, 1`), and a jump to itself
        for dec2 in [&b"\xb0\x01"[..], b"\x90\xeb\xfe"] {
            let mut exe = encrypted(&text, DEC1, b"\x90");
            // put the bad decryptor in (encrypted by the first one, as the rest)
            let base = 0x800 - 0x18;
            let mut plain = unpack_region(&exe, base);
            plain[0x3ea - 0xc6..0x3ea - 0xc6 + dec2.len()].copy_from_slice(dec2);
            exe[base + 0xc6..base + 0xc6 + COUNT].copy_from_slice(&plain);
            encrypt(&mut exe, base + 0x93, base + 0xc6, COUNT);
            assert!(unpack(&exe, &mut Budget::new(Limits::default())).unwrap().is_none(), "{dec2:02x?}");
        }
    }

    /// The first layer's region decrypted.
    fn unpack_region(exe: &[u8], base: usize) -> Vec<u8> {
        let mut f = exe.to_vec();
        assert!(run(&mut f, base + 0x93, base + 0xc6, COUNT as u32, COUNT, &Budget::new(Limits::default())).unwrap());
        f[base + 0xc6..base + 0xc6 + COUNT].to_vec()
    }

    #[test]
    fn the_real_test_file_and_its_damage_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-yc.exe").expect("clamav-testfiles");
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").unwrap();
        let budget = || Budget::new(Limits::default());
        let out = unpack(&real, &mut budget()).unwrap().unwrap();
        // what yC hid is the UPX-packed program that carries clam.exe at its end
        let inner = super::super::upx::unpack(&out, &mut budget()).unwrap().unwrap();
        assert!(inner.ends_with(&clam));
        // every byte of the headers, the entry code and the two decryptors changed in turn, and
        // every 37th elsewhere (each try decrypts the whole file): never a panic
        let yc = 0xc00;
        let every = (0..0x200).chain(yc + 0x60..yc + 0xc6).chain(yc + 0x457..yc + 0x487);
        for at in every.chain((0..real.len()).step_by(37)) {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut budget());
        }
        for cut in (0..real.len()).step_by(29) {
            let _ = unpack(&real[..cut], &mut budget());
        }
    }
}
