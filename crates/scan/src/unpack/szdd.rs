//! SZDD: the LZSS files of Microsoft's `COMPRESS.EXE` (`SETUP.EX_`, `clam.exe.szdd`), opened
//! by `EXPAND.EXE`. After an 8-byte magic, a mode byte (`A`), the last character of the
//! original name and the expanded length, the data is groups of a flag byte and eight items
//! (least significant bit first): a set bit is a literal byte, a clear one a 12-bit position
//! and 4-bit length (3 to 18 bytes) in a 4,096-byte window that starts filled with spaces,
//! writing from 4,080. One member, bounded by the scan's budget (the declared length is not
//! trusted).

use super::{Entry, ReadError, UnpackError, member};
use crate::limits::Budget;

/// The magic at offset 0.
pub const MAGIC: &[u8; 8] = b"SZDD\x88\xf0\x27\x33";

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    budget.entry()?;
    let name = match data.get(9) {
        Some(&c) if c.is_ascii_graphic() => format!("szdd content (name ends in {})", c as char),
        _ => "szdd content".to_string(),
    };
    let declared = data.get(10..14).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let read = expand(data.get(14..).unwrap_or_default(), declared, budget);
    Ok(vec![member(name, "SZDD", read)?])
}

/// The expanded bytes of `input`, stopping at the declared length or where the input ends.
fn expand(input: &[u8], declared: u32, budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    let mut window = [b' '; 4096];
    let mut pos = 4096 - 16;
    let mut out = Vec::with_capacity((declared as usize).min(input.len().saturating_mul(8)).min(1 << 20));
    let mut spent = 0usize;
    let mut i = 0;
    'groups: while i < input.len() && out.len() < declared as usize {
        let flags = input[i];
        i += 1;
        for bit in 0..8 {
            if i >= input.len() || out.len() >= declared as usize {
                break 'groups;
            }
            if flags & (1 << bit) != 0 {
                let b = input[i];
                i += 1;
                out.push(b);
                window[pos] = b;
                pos = (pos + 1) & 0xfff;
            } else {
                let (Some(&lo), Some(&hi)) = (input.get(i), input.get(i + 1)) else { break 'groups };
                i += 2;
                let mut from = usize::from(lo) | (usize::from(hi & 0xf0) << 4);
                for _ in 0..usize::from(hi & 0x0f) + 3 {
                    let b = window[from];
                    out.push(b);
                    window[pos] = b;
                    pos = (pos + 1) & 0xfff;
                    from = (from + 1) & 0xfff;
                }
            }
        }
        // charge the budget as the output grows (a ratio of at most 18 × 8 / 17 per group)
        if out.len() - spent >= 64 * 1024 {
            budget.spend((out.len() - spent) as u64)?;
            spent = out.len();
        }
    }
    out.truncate(declared as usize);
    budget.spend(out.len().saturating_sub(spent) as u64)?;
    if out.len() < declared as usize {
        return Err(ReadError::Io { why: format!("ends after {} of {declared} bytes", out.len()), partial: out });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn szdd(payload: &[u8], declared: u32) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(b'A');
        v.push(b'e');
        v.extend_from_slice(&declared.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn literals_and_window_copies_expand() {
        // "abc" as literals, then a copy of 6 from where "abc" was written (4080): "abcabc"
        let payload = [0b0000_0111, b'a', b'b', b'c', 0xf0, 0xf3];
        let mut budget = Budget::new(Limits::default());
        let e = unpack(&szdd(&payload, 9), &mut budget).unwrap();
        match &e[0] {
            Entry::File { data, name } => {
                assert_eq!(data, b"abcabcabc");
                assert!(name.ends_with("in e)"), "{name}");
            }
            other => panic!("{other:?}"),
        }
        // the window starts as spaces
        let e = unpack(&szdd(&[0, 0x00, 0x00], 3), &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::File { data, .. } if data == b"   "));
    }

    #[test]
    fn a_short_stream_is_damaged_and_a_bomb_is_stopped_by_the_budget() {
        let e = unpack(&szdd(&[0xff, b'x'], 100), &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[0], Entry::Damaged { data, .. } if data == b"x"));
        // every item a copy of 18: 2 bytes in, 18 out — a declared 4 GiB
        let bomb: Vec<u8> =
            std::iter::repeat_n([0u8, 0, 0x0f, 0, 0x0f, 0, 0x0f, 0, 0x0f, 0, 0x0f, 0, 0x0f, 0, 0x0f, 0, 0x0f], 200_000)
                .flatten()
                .collect();
        let limits = Limits { max_expanded: 1_000_000, ..Limits::default() };
        let r = unpack(&szdd(&bomb, u32::MAX), &mut Budget::new(limits));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{r:?}");
    }
}
