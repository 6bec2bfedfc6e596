//! PESpin 1.1-protected Windows executables (issue 17). PESpin's loader, in the last section,
//! hides the original sections behind several layers, each undone with a key kept in the loader:
//! part of the loader XORed with a decreasing byte, another part with a shift-register key
//! stream; the sections named in a bitmap XORed with a key stream seeded by a checksum of the
//! file; a table of the loader XORed again; the sections named in a second bitmap run through a
//! small polymorphic byte decryptor (one-byte-register `add`/`sub`/`xor`/`rol`/`ror`/`inc`/`dec`
//! with constants or the count register, padded with jumps and no-ops, ending with `stosb`);
//! and the sections named in a third bitmap compressed with aPLib (as FSG compresses them), the
//! resources possibly from an offset on. libclamav undoes each layer in turn and rebuilds the
//! executable from the sections; so does this module, from that description, bounded by the
//! file and the budget.

use super::peimage::{Built, Sect, build, clam_sections, le32};
use super::{UnpackError, aplib};
use crate::limits::Budget;

/// The loader's instructions four bytes after the entry point.
const ENTRY_AT_4: &[u8] = b"\xe8\x00\x00\x00\x00\x8b\x1c\x24\x83\xc3";
/// The loader's extent from the entry point that the layers use.
const LOADER_SPAN: usize = 0x3217 + 4;

/// The unpacked executable, if `data` is protected by PESpin 1.1 and unpacks; `Ok(None)` when
/// it is not one (or is damaged).
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let Some((info, secs)) = clam_sections(data) else { return Ok(None) };
    let Some(entry) = le32(data, 0x3c).and_then(|pe| le32(data, pe + 0x28)) else { return Ok(None) };
    let n = secs.len();
    if n < 2 {
        return Ok(None);
    }
    let last = secs[n - 1];
    let end = last.rva + last.rsize;
    if entry < last.rva || end < LOADER_SPAN || entry >= end - LOADER_SPAN {
        return Ok(None);
    }
    if data.get(info.ep as usize + 4..info.ep as usize + 4 + ENTRY_AT_4.len()) != Some(ENTRY_AT_4) {
        return Ok(None);
    }
    budget.spend(data.len() as u64)?;
    let Some(out) = unspin(data, &secs, entry, budget)? else { return Ok(None) };
    Ok(Some(out))
}

/// Whether bit `j` of a bitmap of sections is set (sections past the 32nd never are).
fn named(map: usize, j: usize) -> bool {
    j < 32 && map >> j & 1 == 1
}

/// XORs `bytes` with a shift-register key stream: the key shifted right each byte, `tap`
/// XORed in after the shift when the bit shifted out is `on` (0 or 1), the low byte used.
fn key_stream(bytes: &mut [u8], mut key: u32, tap: u32, on: u32) {
    for b in bytes {
        let out = key & 1;
        key >>= 1;
        if out == on {
            key ^= tap;
        }
        *b ^= key as u8;
    }
}

/// PESpin's checksum of the first bytes of the file.
fn checksum(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (u32::MAX, u32::MAX);
    for &c in bytes {
        a ^= u32::from(c) << 8;
        a = (a >> 3) & 0x1fff_ffff;
        for _ in 0..4 {
            a ^= (b >> 8) & 0xff;
            a = a.wrapping_add(0x7801_a108);
            a ^= b;
            a = a.rotate_right(b & 0x1f);
            std::mem::swap(&mut a, &mut b);
        }
    }
    b
}

/// One byte through the polymorphic decryptor `code` (0x24 bytes of instructions, then
/// `stosb`); `None` for an instruction it does not use or a decryptor of another length.
fn poly(code: &[u8], mut al: u8, cl: u8) -> Option<u8> {
    let mut at = 0;
    while at < 0x24 {
        let op = *code.get(at)?;
        at += 1;
        match op {
            // a short jump over its displacement and the byte after it
            0xeb => at += 2,
            // `or al, al` and the like: one operand byte
            0x0a => at += 1,
            0x90 | 0xf8 | 0xf9 => {}
            0x02 => {
                al = al.wrapping_add(cl);
                at += 1;
            }
            0x2a => {
                al = al.wrapping_sub(cl);
                at += 1;
            }
            0x04 => {
                al = al.wrapping_add(*code.get(at)?);
                at += 1;
            }
            0x2c => {
                al = al.wrapping_sub(*code.get(at)?);
                at += 1;
            }
            0x32 => {
                al ^= cl;
                at += 1;
            }
            0x34 => {
                al ^= *code.get(at)?;
                at += 1;
            }
            0xfe => {
                al = if *code.get(at)? == 0xc0 { al.wrapping_add(1) } else { al.wrapping_sub(1) };
                at += 1;
            }
            0xc0 => {
                let left = *code.get(at)? == 0xc0;
                let by = u32::from(*code.get(at + 1)?) % 8;
                al = if left { al.rotate_left(by) } else { al.rotate_right(by) };
                at += 2;
            }
            _ => return None,
        }
    }
    (at == 0x24 && code.get(at) == Some(&0xaa)).then_some(al)
}

/// Runs `poly` over `bytes`, the count register starting at `bytes.len()`'s low byte and
/// decreasing with every byte.
fn poly_over(code: &[u8], bytes: &mut [u8]) -> Option<()> {
    let mut left = bytes.len();
    for b in bytes {
        *b = poly(code, *b, left as u8)?;
        left -= 1;
    }
    Some(())
}

fn get_mut(d: &mut [u8], at: usize, len: usize) -> Option<&mut [u8]> {
    d.get_mut(at..at.checked_add(len)?)
}

/// Undoes the layers over a copy of the file and rebuilds the executable.
fn unspin(data: &[u8], secs: &[Sect], entry: usize, budget: &mut Budget) -> Result<Option<Vec<u8>>, UnpackError> {
    let n = secs.len() - 1;
    let last = secs[n];
    let mut file = data.to_vec();
    // the loader's own layers, on its section
    let Some(mut loader) = data.get(last.raw..last.raw + last.rsize).map(<[u8]>::to_vec) else { return Ok(None) };
    let ep = entry - last.rva;
    let Some(key8) = loader.get(ep + 0xdc).copied() else { return Ok(None) };
    if loader.get(ep + 0xdb) != Some(&0xbb)
        || loader.get(ep + 0xe0) != Some(&0xb9)
        || le32(&loader, ep + 0xe1) != Some(0x11fe)
    {
        return Ok(None);
    }
    let Some(part) = get_mut(&mut loader, ep + 0x1fe5, 0x11fe) else { return Ok(None) };
    // from the last byte down, the key decreasing
    let mut k = key8;
    for b in part.iter_mut().rev() {
        *b ^= k;
        k = k.wrapping_sub(1);
    }
    if loader.len() < ep + LOADER_SPAN {
        return Ok(None);
    }
    let Some(key) = le32(&loader, ep + 0x26eb) else { return Ok(None) };
    if le32(&loader, ep + 0x26f0) != Some(0x5a0) {
        return Ok(None);
    }
    let Some(part) = get_mut(&mut loader, ep + 0x2d5, 0x5a0) else { return Ok(None) };
    key_stream(part, key as u32, 0x8c32_8834, 1);
    // the sections' key: a value in the loader less the checksum of the file up to a length it
    // gives
    let Some(summed) = le32(&loader, ep + 0x429).and_then(|v| data.len().checked_sub(v)).filter(|&l| l < data.len())
    else {
        return Ok(None);
    };
    let Some(key) = le32(&loader, ep + 0x3217).map(|v| (v as u32).wrapping_sub(checksum(&data[..summed]))) else {
        return Ok(None);
    };
    file[last.raw..last.raw + last.rsize].copy_from_slice(&loader);
    let ep = entry - last.rva + last.raw;
    let Some(xored) = le32(&file, ep + 0x3207) else { return Ok(None) };
    for (j, s) in secs[..n].iter().enumerate() {
        if named(xored, j) {
            let Some(bytes) = get_mut(&mut file, s.raw, s.rsize) else { return Ok(None) };
            key_stream(bytes, key, 0xed43_af31, 0);
        }
    }
    // a table of the loader's, and the first decryptor over another part of it
    if le32(&file, ep + 0x644) != Some(0x180) {
        return Ok(None);
    }
    let Some(key) = le32(&file, ep + 0x650) else { return Ok(None) };
    let Some(part) = get_mut(&mut file, ep + 0x28d3, 0x180) else { return Ok(None) };
    key_stream(part, key as u32, 0xed43_af32, 1);
    if le32(&file, ep + 0x28dd) != Some(0x1a1) {
        return Ok(None);
    }
    let Some(code) = file.get(ep + 0x28ec..ep + 0x28ec + 0x25).map(<[u8]>::to_vec) else { return Ok(None) };
    let Some(part) = get_mut(&mut file, ep + 0x6d4, 0x1a1) else { return Ok(None) };
    if poly_over(&code, part).is_none() {
        return Ok(None);
    }
    // the sections' decryptor
    let (Some(polyed), Some(code)) =
        (le32(&file, ep + 0x6f1), file.get(ep + 0x755..ep + 0x755 + 0x25).map(<[u8]>::to_vec))
    else {
        return Ok(None);
    };
    for (j, s) in secs[..n].iter().enumerate() {
        if named(polyed, j) {
            budget.check_time()?;
            let Some(bytes) = get_mut(&mut file, s.raw, s.rsize) else { return Ok(None) };
            if poly_over(&code, bytes).is_none() {
                return Ok(None);
            }
        }
    }
    // the compressed sections, each grown to its size in memory
    let Some(packed) = le32(&file, ep + 0x3061) else { return Ok(None) };
    let mut grown: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
    for (j, s) in secs[..n].iter().enumerate() {
        if named(packed, j) {
            budget.spend(s.vsize as u64)?;
            let Some(src) = file.get(s.raw..s.raw + s.rsize) else { return Ok(None) };
            let mut out = vec![0u8; s.vsize];
            if aplib::decode(src, &mut out).is_none() {
                return Ok(None);
            }
            grown.push(Some(out));
        } else {
            grown.push(None);
        }
    }
    // resources compressed from an offset on
    let res = le32(&file, ep + 0x2fee).unwrap_or(0);
    if res != 0
        && let Some(j) = secs[..n].iter().position(|s| s.rva <= res && res - s.rva < s.vsize && res - s.rva <= s.rsize)
        && j < 32
        && !named(packed, j)
    {
        let s = secs[j];
        let keep = res - s.rva;
        // a section whose bytes are not all in the file is left as it is
        if let Some(raw) = file.get(s.raw..s.raw.saturating_add(s.rsize)) {
            budget.spend(s.vsize as u64)?;
            let mut out = vec![0u8; s.vsize];
            out[..keep].copy_from_slice(&raw[..keep]);
            // (libclamav goes on with the section as it is when this fails)
            if aplib::decode(&raw[keep..], &mut out[keep..]).is_some() {
                grown[j] = Some(out);
            }
        }
    }
    let parts: Vec<Built<'_>> = secs[..n]
        .iter()
        .zip(&grown)
        .map(|(s, g)| Built {
            rva: s.rva,
            vsize: s.vsize,
            // a section placed past the end of the file has nothing of it in the file
            data: g.as_deref().unwrap_or_else(|| file.get(s.raw..).map_or(&[][..], |f| &f[..s.rsize.min(f.len())])),
        })
        .collect();
    Ok(build(&parts, 0x1000, 0x40_0000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::unpack::aplib::tests::Packer;
    use crate::unpack::peimage::{put32, test_exe};

    /// The byte `code` turns into `plain` with count `cl` (its instructions are one-to-one).
    fn encrypt_byte(code: &[u8], plain: u8, cl: u8) -> u8 {
        (0..=255u8).find(|&e| poly(code, e, cl) == Some(plain)).expect("a one-to-one decryptor")
    }

    fn poly_encrypt(code: &[u8], bytes: &mut [u8]) {
        let mut left = bytes.len();
        for b in bytes {
            *b = encrypt_byte(code, *b, left as u8);
            left -= 1;
        }
    }

    /// A decryptor with every instruction PESpin's use, 0x24 bytes, then `stosb`.
    fn decryptor(seed: u8) -> Vec<u8> {
        let mut c = vec![0x02, 0xc1, 0x2a, 0xc1, 0x04, seed, 0x2c, 0x13, 0x32, 0xc1, 0x34, seed ^ 0x5a];
        c.extend_from_slice(&[
            0xfe, 0xc0, 0xfe, 0xc8, 0xc0, 0xc0, 3, 0xc0, 0xc8, 5, 0xeb, 0x00, 0x0a, 0xc0, 0x90, 0xf8, 0xf9,
        ]);
        c.resize(0x24, 0x90);
        c.push(0xaa);
        c
    }

    /// A small PESpin 1.1 executable: `.text` compressed, run through the sections' decryptor
    /// and XORed; `.rsrc` as it is; the loader's layers over its keys and tables.
    fn spinned(text: &[u8]) -> Vec<u8> {
        let (ep, size) = (0x10, 0x3c00);
        let mut f = test_exe(
            size,
            0x40,
            &[(0x28, 0x3000 + ep), (24 + 32, 0x1000), (24 + 36, 0x200), (0x50, 0x7000)],
            &[
                (b".text", 0x1000, 0x1000, 0x200, 0x400),
                (b".rsrc", 0x1000, 0x2000, 0x200, 0x600),
                (b"spin", 0x4000, 0x3000, 0x3400, 0x800),
            ],
        );
        // .text: compressed, then the sections' decryptor, then the XOR key stream
        let mut p = Packer::new(text[0]);
        for &c in &text[1..] {
            p.literal(c);
        }
        p.copy(text.len(), 0x600);
        let mut packed = p.finish();
        assert!(packed.len() <= 0x200);
        packed.resize(0x200, 0);
        let (poly1, poly2) = (decryptor(0x11), decryptor(0x77));
        poly_encrypt(&poly2, &mut packed);
        let key32 = 0x1357_9bdfu32;
        key_stream(&mut packed, key32, 0xed43_af31, 0);
        f[0x400..0x600].copy_from_slice(&packed);
        f[0x600..0x610].copy_from_slice(b"resources stay  ");
        // the loader, plain
        let l = 0x800 + ep;
        f[l + 4..l + 4 + ENTRY_AT_4.len()].copy_from_slice(ENTRY_AT_4);
        let (key8, key_a, key_b) = (0x5cu8, 0x2468_ace1u32, 0x0bad_f00du32);
        f[l + 0xdb] = 0xbb;
        f[l + 0xdc] = key8;
        f[l + 0xe0] = 0xb9;
        put32(&mut f, l + 0xe1, 0x11fe).unwrap();
        put32(&mut f, l + 0x26eb, key_a as usize).unwrap();
        put32(&mut f, l + 0x26f0, 0x5a0).unwrap();
        put32(&mut f, l + 0x429, 0x200).unwrap();
        put32(&mut f, l + 0x3207, 1).unwrap();
        put32(&mut f, l + 0x644, 0x180).unwrap();
        put32(&mut f, l + 0x650, key_b as usize).unwrap();
        put32(&mut f, l + 0x28dd, 0x1a1).unwrap();
        f[l + 0x28ec..l + 0x28ec + 0x25].copy_from_slice(&poly1);
        put32(&mut f, l + 0x6f1, 1).unwrap();
        f[l + 0x755..l + 0x755 + 0x25].copy_from_slice(&poly2);
        put32(&mut f, l + 0x3061, 1).unwrap();
        // the layers, the last undone first
        poly_encrypt(&poly1, &mut f[l + 0x6d4..l + 0x6d4 + 0x1a1]);
        key_stream(&mut f[l + 0x28d3..l + 0x28d3 + 0x180], key_b, 0xed43_af32, 1);
        key_stream(&mut f[l + 0x2d5..l + 0x2d5 + 0x5a0], key_a, 0x8c32_8834, 1);
        let mut k = key8;
        for b in f[l + 0x1fe5..l + 0x1fe5 + 0x11fe].iter_mut().rev() {
            *b ^= k;
            k = k.wrapping_sub(1);
        }
        // the sections' key: the stored value less the checksum of the file up to 0x200
        // bytes from its end (the stored value lies past that)
        let sum = checksum(&f[..size - 0x200]);
        put32(&mut f, l + 0x3217, key32.wrapping_add(sum) as usize).unwrap();
        f
    }

    #[test]
    fn a_spinned_executable_is_rebuilt_with_its_sections() {
        let text = b"PESpin test section: compressed, encrypted twice. ";
        let exe = spinned(text);
        if let Ok(dir) = std::env::var("MXSHIELD_WRITE_SEED") {
            // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
            std::fs::write(std::path::Path::new(&dir).join("seed-exe-pespin"), [&[0][..], &exe].concat()).unwrap();
        }
        let out = unpack(&exe, &mut Budget::new(Limits::default())).unwrap().unwrap();
        let mut want = text.to_vec();
        for _ in 0..0x600 {
            want.push(want[want.len() - text.len()]);
        }
        // two sections: .text grown to its size in memory, .rsrc as it was
        let (secs, _) = crate::unpack::peimage::sections(&out, 0x40, 96).unwrap();
        assert_eq!(secs.len(), 2);
        let t = secs[0];
        assert_eq!((t.rva, t.rsize), (0x1000, 0x1000));
        assert_eq!(&out[t.raw..t.raw + want.len()], &want[..]);
        assert_eq!(&out[secs[1].raw..secs[1].raw + 16], b"resources stay  ");
        // each grown section is charged
        let tight = Limits { max_expanded: 0x3c00 + 10, ..Default::default() };
        assert!(matches!(unpack(&exe, &mut Budget::new(tight)), Err(UnpackError::Limit(_))));
        // the file changed where the checksum covers it: the sections' key is wrong, the
        // decryptor or the decompression fails
        let mut other = exe.clone();
        other[0x700] ^= 1;
        assert!(unpack(&other, &mut Budget::new(Limits::default())).unwrap().is_none());
    }

    #[test]
    fn the_real_test_file_and_its_damage_end_in_bounded_time() {
        let real = std::fs::read("/usr/share/clamav-testfiles/clam-pespin.exe").expect("clamav-testfiles");
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").unwrap();
        let budget = || Budget::new(Limits::default());
        let out = unpack(&real, &mut budget()).unwrap().unwrap();
        assert!(out.ends_with(&clam), "clam.exe ends the rebuilt file");
        // the headers and the loader's keys and tables densely, the rest sparsely
        let ep = 0xc87;
        let dense = (0..0x200).chain(ep..ep + 0x100).chain(ep + 0x3200..ep + 0x3220).chain(ep + 0x640..ep + 0x660);
        for at in dense.chain((0..real.len()).step_by(13)) {
            let mut bad = real.clone();
            bad[at] ^= 0x5a;
            let _ = unpack(&bad, &mut budget());
        }
        for cut in (0..real.len()).step_by(61) {
            let _ = unpack(&real[..cut], &mut budget());
        }
    }
}
