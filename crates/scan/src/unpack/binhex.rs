//! BinHex 4.0 (`.hqx`, `application/mac-binhex40`): classic Mac OS files as 7-bit text. After
//! the line `(This file must be converted with BinHex 4.0)`, the data between two colons is
//! six bits per character (a 64-character alphabet; line breaks ignored), then run-length
//! coded (`0x90 n`: the byte before repeated to n in all; `0x90 0`: a literal 0x90). It holds
//! a header (name, type, creator, flags, the two forks' lengths, CRC) then the data fork and
//! the resource fork, each followed by its CRC-16 (CCITT, as XMODEM). Each fork that is not
//! empty is a member; a CRC that does not match marks it damaged (scanned all the same).
//! Expansion is charged to the scan's budget as it happens.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// The text that introduces the data.
pub const INTRO: &[u8] = b"(This file must be converted with BinHex";

const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let broken = |why: &str| UnpackError::Broken(Unreadable::damaged("BinHex", why.to_string()));
    let start = memchr::memmem::find(data, INTRO).ok_or_else(|| broken("no BinHex line"))?;
    let after = &data[start + INTRO.len()..];
    let colon = memchr::memchr(b':', after).ok_or_else(|| broken("no data"))?;
    let decoded = decode(&after[colon + 1..], budget)?;
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = decoded.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let header = (|| {
        let name_len = usize::from(*take(&mut at, 1)?.first()?);
        let name = take(&mut at, name_len)?.to_vec();
        // version, type, creator, flags
        take(&mut at, 1 + 4 + 4 + 2)?;
        let data_len = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let rsrc_len = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let crc = u16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
        Some((name, data_len, rsrc_len, crc))
    })();
    let Some((name, data_len, rsrc_len, header_crc)) = header else {
        return Err(broken("the header is cut short"));
    };
    let name = super::text_name(&name);
    let header_ok = crc16(&decoded[..at - 2]) == header_crc;
    let mut entries = Vec::new();
    for (fork, len) in [(name.clone(), data_len), (format!("{name} (resource fork)"), rsrc_len)] {
        if len == 0 {
            at = at.saturating_add(2);
            continue;
        }
        budget.entry()?;
        let end = at.saturating_add(len).min(decoded.len());
        let bytes = decoded[at.min(end)..end].to_vec();
        let stored = decoded.get(end..end + 2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        let why = if bytes.len() < len {
            Some(format!("the fork ends after {} of {len} bytes", bytes.len()))
        } else if !header_ok {
            Some("the header's CRC does not match".to_string())
        } else if stored != Some(crc16(&bytes)) {
            Some("the fork's CRC does not match".to_string())
        } else {
            None
        };
        at = end.saturating_add(2);
        entries.push(match why {
            None => Entry::File { name: fork, data: bytes },
            Some(w) if bytes.is_empty() => Entry::Broken { name: fork, why: Unreadable::damaged("BinHex", w) },
            Some(w) => Entry::Damaged { name: fork, data: bytes, why: Unreadable::damaged("BinHex", w).to_string() },
        });
    }
    Ok(entries)
}

/// The bytes of the text after the opening colon: six bits a character up to the closing
/// colon, then the run-length coding undone.
fn decode(text: &[u8], budget: &mut Budget) -> Result<Vec<u8>, UnpackError> {
    let mut value = [0xffu8; 256];
    for (i, &c) in ALPHABET.iter().enumerate() {
        value[usize::from(c)] = i as u8;
    }
    let mut raw = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        if c == b':' {
            break;
        }
        let v = value[usize::from(c)];
        if v == 0xff {
            continue; // line breaks and other white space
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            raw.push((acc >> bits) as u8);
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut spent = 0usize;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == 0x90 && i + 1 < raw.len() {
            let n = raw[i + 1];
            i += 2;
            match (n, out.last().copied()) {
                (0, _) => out.push(0x90),
                (n, Some(prev)) => out.extend(std::iter::repeat_n(prev, usize::from(n) - 1)),
                (_, None) => {}
            }
        } else {
            out.push(b);
            i += 1;
        }
        if out.len() - spent >= 64 * 1024 {
            budget.spend((out.len() - spent) as u64)?;
            spent = out.len();
        }
    }
    budget.spend((out.len() - spent) as u64)?;
    Ok(out)
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), as BinHex computes it.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// A BinHex file of `name` with data fork `fork`, written as BinHex 4.0 writes it.
    pub(crate) fn encode(name: &str, fork: &[u8]) -> Vec<u8> {
        let mut h = vec![name.len() as u8];
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        h.extend_from_slice(b"TEXTttxt\0\0");
        h.extend_from_slice(&(fork.len() as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&crc16(&h).to_be_bytes());
        h.extend_from_slice(fork);
        h.extend_from_slice(&crc16(fork).to_be_bytes());
        h.extend_from_slice(&crc16(&[]).to_be_bytes());
        // run-length: 0x90 escaped, no runs
        let mut rle = Vec::new();
        for b in h {
            rle.push(b);
            if b == 0x90 {
                rle.push(0);
            }
        }
        let mut text = b"(This file must be converted with BinHex 4.0)\r\n:".to_vec();
        for chunk in rle.chunks(3) {
            let mut c = [0u8; 3];
            c[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, c[0], c[1], c[2]]);
            let chars = match chunk.len() {
                3 => 4,
                2 => 3,
                _ => 2,
            };
            for k in 0..chars {
                text.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]);
            }
        }
        text.extend_from_slice(b":\r\n");
        text
    }

    #[test]
    fn a_file_round_trips_and_a_changed_byte_is_damaged() {
        let fork: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let hqx = encode("report.txt", &fork);
        let e = unpack(&hqx, &mut Budget::new(Limits::default())).unwrap();
        assert_eq!(e.len(), 1);
        assert!(matches!(&e[0], Entry::File { name, data } if name == "report.txt" && *data == fork), "{e:?}");
        let mut bad = hqx.clone();
        let i = bad.len() - 40;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let e = unpack(&bad, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::Damaged { .. }), "{e:?}");
    }

    #[test]
    fn runs_expand_within_the_budget() {
        // one byte, then runs of 255 of it: 2 bytes of input per 254 of output
        let mut raw = vec![b'x'];
        for _ in 0..100_000 {
            raw.extend_from_slice(&[0x90, 255]);
        }
        let mut text = Vec::new();
        for chunk in raw.chunks(3) {
            let mut c = [0u8; 3];
            c[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, c[0], c[1], c[2]]);
            for k in 0..4 {
                text.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]);
            }
        }
        let limits = Limits { max_expanded: 1_000_000, ..Limits::default() };
        let r = decode(&text, &mut Budget::new(limits));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{:?}", r.map(|v| v.len()));
        assert_eq!(decode(&text[..4], &mut Budget::new(Limits::default())).unwrap(), vec![b'x'; 255]);
    }
}
