//! aPLib, the compression FSG, PESpin and MEW use (libclamav's `cli_unfsg` and `unmew`):
//! literals and copies driven by a bit stream whose tag bytes sit in the data stream where the
//! decoder needs them. Decoded from that description; bounded by the output buffer.

/// Decodes `src` into `out`: the first byte literal, then a bit-stream-driven mix of literals,
/// short copies, copies with gamma-coded lengths and offsets (the last offset reusable), until
/// a short copy with offset 0. Returns where the stream ended in `src` and how much of `out`
/// was written; `None` if the stream breaks off or a copy leaves the output.
pub(super) fn decode(src: &[u8], out: &mut [u8]) -> Option<(usize, usize)> {
    let mut bits = BitBytes { src, at: 1, byte: 0x80 };
    let (mut o, mut last_offset, mut after_literal) = (0usize, 0usize, true);
    *out.first_mut()? = *src.first()?;
    o += 1;
    loop {
        if !bits.bit()? {
            *out.get_mut(o)? = bits.byte_at()?;
            o += 1;
            after_literal = true;
            continue;
        }
        let (len, offset);
        if !bits.bit()? {
            // a gamma-coded length; its high bits (less 2, or 3 after a literal) select the
            // offset's high byte, or (0) the last offset again
            let high = bits.gamma()?.checked_sub(1 + usize::from(after_literal));
            match high {
                Some(0) => {
                    len = bits.gamma()?;
                    offset = last_offset;
                }
                Some(h) => {
                    let off = usize::from(bits.byte_at()?) + ((h - 1) << 8);
                    let mut l = bits.gamma()?;
                    if off >= 0x7d00 {
                        l += 1;
                    }
                    if off >= 0x500 {
                        l += 1;
                    }
                    if off <= 0x7f {
                        l += 2;
                    }
                    len = l;
                    offset = off;
                    last_offset = off;
                }
                None => return None,
            }
            after_literal = false;
        } else if !bits.bit()? {
            // a short copy: a byte with the offset in its top 7 bits and the length's bit
            let b = bits.byte_at()?;
            offset = usize::from(b >> 1);
            if offset == 0 {
                return Some((bits.at, o));
            }
            len = usize::from(b & 1) + 2;
            last_offset = offset;
            after_literal = false;
        } else {
            // a single byte from up to 15 back, or a zero
            let mut v = 0x10usize;
            while v < 0x100 {
                v = v * 2 + usize::from(bits.bit()?);
            }
            v &= 0xff;
            after_literal = true;
            if v == 0 {
                *out.get_mut(o)? = 0;
                o += 1;
                continue;
            }
            len = 1;
            offset = v;
        }
        if offset > o || len > out.len() - o {
            return None;
        }
        for _ in 0..len {
            out[o] = out[o - offset];
            o += 1;
        }
    }
}

/// aPLib's bits: a byte shifted left, refilled (with a marker bit) from the stream when empty;
/// other bytes are read from the same place.
struct BitBytes<'a> {
    src: &'a [u8],
    at: usize,
    byte: u8,
}

impl BitBytes<'_> {
    fn bit(&mut self) -> Option<bool> {
        let old = self.byte;
        self.byte = old.wrapping_mul(2);
        if old & 0x7f != 0 {
            return Some(old & 0x80 != 0);
        }
        // (libclamav never takes a bit byte from the stream's last byte)
        if self.at + 1 >= self.src.len() {
            return None;
        }
        let b = self.src[self.at];
        self.at += 1;
        self.byte = b.wrapping_mul(2).wrapping_add(1);
        Some(b & 0x80 != 0)
    }

    fn byte_at(&mut self) -> Option<u8> {
        let b = *self.src.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// An Elias-gamma-like number: 1, then (bit, more?) pairs.
    fn gamma(&mut self) -> Option<usize> {
        let mut v = 1usize;
        loop {
            v = v.checked_mul(2)? + usize::from(self.bit()?);
            if !self.bit()? {
                return Some(v);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes aPLib: tag bytes (bits, most significant first) placed in the stream where the
    /// decoder fetches them, data bytes between them.
    pub(crate) struct Packer {
        out: Vec<u8>,
        tag: usize,
        used: u32,
        after_literal: bool,
        last: usize,
    }

    impl Packer {
        pub(crate) fn new(first: u8) -> Self {
            Packer { out: vec![first], tag: 0, used: 8, after_literal: true, last: 0 }
        }
        fn bit(&mut self, b: bool) {
            if self.used == 8 {
                self.tag = self.out.len();
                self.out.push(0);
                self.used = 0;
            }
            if b {
                self.out[self.tag] |= 0x80 >> self.used;
            }
            self.used += 1;
        }
        fn gamma(&mut self, v: usize) {
            assert!(v >= 2);
            let n = usize::BITS - v.leading_zeros();
            for k in (0..n - 1).rev() {
                self.bit(v >> k & 1 == 1);
                self.bit(k > 0);
            }
        }
        pub(crate) fn literal(&mut self, b: u8) {
            self.bit(false);
            self.out.push(b);
            self.after_literal = true;
        }
        /// A copy, in the form the offset and length call for.
        pub(crate) fn copy(&mut self, offset: usize, len: usize) {
            if offset == self.last && self.after_literal && len >= 2 {
                self.bit(true);
                self.bit(false);
                self.gamma(2);
                self.gamma(len);
            } else if len == 1 && offset < 16 {
                self.bit(true);
                self.bit(true);
                self.bit(true);
                for k in (0..4).rev() {
                    self.bit(offset >> k & 1 == 1);
                }
                self.after_literal = true;
                return;
            } else if (1..128).contains(&offset) && (2..4).contains(&len) {
                self.bit(true);
                self.bit(true);
                self.bit(false);
                self.out.push((offset << 1 | (len - 2)) as u8);
            } else {
                self.bit(true);
                self.bit(false);
                self.gamma((offset >> 8) + 2 + usize::from(self.after_literal));
                self.out.push(offset as u8);
                let adjust =
                    usize::from(offset >= 0x7d00) + usize::from(offset >= 0x500) + 2 * usize::from(offset <= 0x7f);
                self.gamma(len - adjust);
            }
            self.last = offset;
            self.after_literal = false;
        }
        pub(crate) fn zero(&mut self) {
            for b in [true, true, true, false, false, false, false] {
                self.bit(b);
            }
            self.after_literal = true;
        }
        pub(crate) fn finish(mut self) -> Vec<u8> {
            self.bit(true);
            self.bit(true);
            self.bit(false);
            self.out.push(0);
            // (the decoder never takes a tag byte from the last byte)
            self.out.push(0);
            self.out
        }
    }

    #[test]
    fn aplib_streams_decode() {
        let text = b"PESpin compresses its sections with aPLib, as FSG does: ";
        let mut p = Packer::new(text[0]);
        let mut want = vec![text[0]];
        for &c in &text[1..] {
            p.literal(c);
            want.push(c);
        }
        let copies = [(3, 1), (9, 1), (7, 2), (60, 3), (text.len(), 20), (text.len(), 5), (40, 4), (1, 300)];
        for (offset, len) in copies {
            p.copy(offset, len);
            for _ in 0..len {
                want.push(want[want.len() - offset]);
            }
            p.literal(b'.');
            want.push(b'.');
            // the last offset again, right after a literal
            p.copy(offset, 6);
            for _ in 0..6 {
                want.push(want[want.len() - offset]);
            }
        }
        p.zero();
        want.push(0);
        // offsets of two bytes, and past the length adjustments' thresholds
        let mut filler: Vec<u8> = testkit::pseudo_random(3, 0x8000);
        for &c in &filler {
            p.literal(c);
        }
        want.append(&mut filler);
        for (offset, len) in [(0x200, 7), (0x600, 9), (0x7e00, 12)] {
            p.copy(offset, len);
            for _ in 0..len {
                want.push(want[want.len() - offset]);
            }
        }
        let stream = p.finish();
        let mut out = vec![0u8; want.len() + 10];
        assert_eq!(decode(&stream, &mut out), Some((stream.len() - 1, want.len())));
        assert_eq!(&out[..want.len()], &want[..]);
        // cut short, or too little room: refused
        assert_eq!(decode(&stream[..stream.len() / 2], &mut out), None);
        assert_eq!(decode(&stream, &mut [0u8; 100]), None);
    }
}
