//! NSIS's own bzip2 (issue 17). `makensis` writes bzip2 blocks (900 k) without the stream's
//! `BZh9` header, each block introduced by one byte — `0x31` for a block, `0x17` for the end —
//! instead of bzip2's 48-bit block and end magics, and with no block or stream CRC and no
//! "randomised" bit. The body of a block is bzip2's (as libclamav's copy of NSIS's decoder reads
//! it): the original pointer, the symbols in use, the Huffman tables and their selectors, the
//! move-to-front values with runs of zeros, the Burrows–Wheeler transform undone, and the
//! initial run-length coding (four equal bytes, then a count of more) undone as bytes are read.
//!
//! Every length and index is checked; a block holds at most 900,000 symbols, and its bytes are
//! produced as they are read, so the caller's budget bounds the output.

use std::io::{self, Read};

/// Most symbols of a block (bzip2's 100 k × the level, 9 in NSIS).
const BLOCK_MAX: usize = 900_000;
/// Most selectors kept (bzip2 1.0.8's `BZ_MAX_SELECTORS`; more are read and ignored).
const MAX_SELECTORS: usize = 18_002;
/// Longest Huffman code.
const MAX_CODE_LEN: u32 = 20;

/// The decoded bytes of an NSIS bzip2 stream, as they are read.
pub struct Reader<'a> {
    bits: Bits<'a>,
    /// The block's transform vector: for each position, the next position (high 24 bits) and
    /// the byte (low 8 bits).
    tt: Vec<u32>,
    /// Where the walk through `tt` is, and how many bytes of the block are still to come.
    position: u32,
    left: usize,
    /// The run-length decoding: the last byte, how many times in a row it came, and how many
    /// more copies of it are owed.
    last: Option<u8>,
    run: u8,
    owed: usize,
    ended: bool,
}

impl<'a> Reader<'a> {
    /// A reader of the stream in `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            bits: Bits { data, at: 0, buffer: 0, held: 0 },
            tt: Vec::new(),
            position: 0,
            left: 0,
            last: None,
            run: 0,
            owed: 0,
            ended: false,
        }
    }

    /// Reads the next block header and body; `Ok(false)` at the end marker.
    fn next_block(&mut self) -> Result<bool, &'static str> {
        match self.bits.take(8)? {
            0x17 => return Ok(false),
            0x31 => {}
            _ => return Err("no block marker"),
        }
        let origin = self.bits.take(24)? as usize;
        // the symbols in use: 16 groups of 16
        let groups = self.bits.take(16)?;
        let mut in_use = Vec::with_capacity(256);
        for g in 0..16u32 {
            if groups & (0x8000 >> g) != 0 {
                let members = self.bits.take(16)?;
                for m in 0..16u32 {
                    if members & (0x8000 >> m) != 0 {
                        in_use.push((g * 16 + m) as u8);
                    }
                }
            }
        }
        if in_use.is_empty() {
            return Err("no symbols in use");
        }
        let alphabet = in_use.len() + 2;
        let tables = self.bits.take(3)? as usize;
        if !(2..=6).contains(&tables) {
            return Err("bad number of Huffman tables");
        }
        let count = self.bits.take(15)? as usize;
        if count == 0 {
            return Err("no selectors");
        }
        // selectors, move-to-front coded in unary
        let mut order: Vec<u8> = (0..tables as u8).collect();
        let mut selectors = Vec::with_capacity(count.min(MAX_SELECTORS));
        for _ in 0..count {
            let mut j = 0;
            while self.bits.take(1)? == 1 {
                j += 1;
                if j >= tables {
                    return Err("bad selector");
                }
            }
            let t = order.remove(j);
            order.insert(0, t);
            if selectors.len() < MAX_SELECTORS {
                selectors.push(t);
            }
        }
        // code lengths, each table's as deltas from a 5-bit start
        let mut codes = Vec::with_capacity(tables);
        for _ in 0..tables {
            let mut len = self.bits.take(5)?;
            let mut lengths = Vec::with_capacity(alphabet);
            for _ in 0..alphabet {
                loop {
                    if !(1..=MAX_CODE_LEN).contains(&len) {
                        return Err("bad code length");
                    }
                    if self.bits.take(1)? == 0 {
                        break;
                    }
                    if self.bits.take(1)? == 0 {
                        len += 1;
                    } else {
                        len -= 1;
                    }
                }
                lengths.push(len as u8);
            }
            codes.push(Huffman::new(&lengths));
        }
        // move-to-front values, runs of the front symbol in bijective base 2 (RUNA, RUNB)
        let end_of_block = in_use.len() + 1;
        let mut front: Vec<u8> = in_use.clone();
        let mut counts = [0u32; 256];
        self.tt.clear();
        let mut selector = 0;
        let mut in_group = 0;
        let mut run: Option<(usize, usize)> = None; // (count so far, weight of the next digit)
        loop {
            if in_group == 0 {
                if selector >= selectors.len() {
                    return Err("selectors run out");
                }
                in_group = 50;
                selector += 1;
            }
            in_group -= 1;
            let symbol = codes[usize::from(selectors[selector - 1])].decode(&mut self.bits)?;
            if symbol <= 1 {
                let (n, weight) = run.unwrap_or((0, 1));
                if weight > BLOCK_MAX {
                    return Err("run too long");
                }
                run = Some((n + weight * (symbol + 1), weight * 2));
                continue;
            }
            if let Some((n, _)) = run.take() {
                let byte = front[0];
                if self.tt.len() + n > BLOCK_MAX {
                    return Err("block too long");
                }
                counts[usize::from(byte)] += n as u32;
                self.tt.extend(std::iter::repeat_n(u32::from(byte), n));
            }
            if symbol == end_of_block {
                break;
            }
            let index = symbol - 1;
            if index >= front.len() {
                return Err("bad move-to-front index");
            }
            let byte = front.remove(index);
            front.insert(0, byte);
            if self.tt.len() >= BLOCK_MAX {
                return Err("block too long");
            }
            counts[usize::from(byte)] += 1;
            self.tt.push(u32::from(byte));
        }
        if origin >= self.tt.len() {
            return Err("original pointer past the block");
        }
        // the inverse transform: link each position to the next
        let mut start = [0u32; 256];
        let mut sum = 0;
        for (s, c) in start.iter_mut().zip(counts) {
            *s = sum;
            sum += c;
        }
        for i in 0..self.tt.len() {
            let byte = (self.tt[i] & 0xff) as usize;
            let to = start[byte] as usize;
            self.tt[to] |= (i as u32) << 8;
            start[byte] += 1;
        }
        self.position = self.tt[origin] >> 8;
        self.left = self.tt.len();
        self.last = None;
        self.run = 0;
        self.owed = 0;
        Ok(true)
    }

    /// The next byte of the current block after the transform, if any is left.
    fn transformed(&mut self) -> Option<u8> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let entry = self.tt[self.position as usize];
        self.position = entry >> 8;
        Some(entry as u8)
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.owed > 0 {
                let take = self.owed.min(buf.len() - n);
                buf[n..n + take].fill(self.last.unwrap_or(0));
                self.owed -= take;
                n += take;
                continue;
            }
            let Some(byte) = self.transformed() else {
                if n > 0 || self.ended {
                    break;
                }
                match self.next_block() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.ended = true;
                        break;
                    }
                    Err(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("NSIS bzip2: {why}"))),
                }
            };
            if self.run == 4 {
                // after four equal bytes, a count of more
                self.owed = usize::from(byte);
                self.run = 0;
                continue;
            }
            if self.last == Some(byte) {
                self.run += 1;
            } else {
                self.last = Some(byte);
                self.run = 1;
            }
            buf[n] = byte;
            n += 1;
        }
        Ok(n)
    }
}

/// Bits read from the most significant down, through a 64-bit buffer.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load.
    at: usize,
    /// Loaded bits, the next one the highest of the `held` lowest.
    buffer: u64,
    held: u32,
}

impl Bits<'_> {
    /// The next `n` bits (at most 32).
    fn take(&mut self, n: u32) -> Result<u32, &'static str> {
        while self.held < n {
            let byte = *self.data.get(self.at).ok_or("stream cut short")?;
            self.at += 1;
            self.buffer = (self.buffer << 8) | u64::from(byte);
            self.held += 8;
        }
        self.held -= n;
        Ok(((self.buffer >> self.held) & ((1u64 << n) - 1)) as u32)
    }
}

/// A canonical Huffman code (codes given in order of length, then symbol), decoded bit by bit.
struct Huffman {
    /// For each length: the first code, how many codes, where their symbols start in `symbols`.
    first: [u32; MAX_CODE_LEN as usize + 1],
    count: [u32; MAX_CODE_LEN as usize + 1],
    offset: [u32; MAX_CODE_LEN as usize + 1],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut count = [0u32; MAX_CODE_LEN as usize + 1];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        let (mut first, mut offset) = ([0u32; MAX_CODE_LEN as usize + 1], [0u32; MAX_CODE_LEN as usize + 1]);
        let (mut code, mut at) = (0u32, 0u32);
        for len in 1..=MAX_CODE_LEN as usize {
            first[len] = code;
            offset[len] = at;
            code = (code + count[len]) << 1;
            at += count[len];
        }
        // symbols by length, then by value: one pass (a block may set up six tables of 258)
        let mut symbols = vec![0u16; lengths.len()];
        let mut next = offset;
        for (s, &l) in lengths.iter().enumerate() {
            symbols[next[usize::from(l)] as usize] = s as u16;
            next[usize::from(l)] += 1;
        }
        Huffman { first, count, offset, symbols }
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<usize, &'static str> {
        let mut code = 0u32;
        for len in 1..=MAX_CODE_LEN as usize {
            code = (code << 1) | bits.take(1)?;
            let i = code.wrapping_sub(self.first[len]);
            if code >= self.first[len] && i < self.count[len] {
                return Ok(usize::from(self.symbols[(self.offset[len] + i) as usize]));
            }
        }
        Err("bad Huffman code")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The bits of `data`, most significant first.
    fn bits_of(data: &[u8]) -> Vec<bool> {
        data.iter().flat_map(|b| (0..8).map(move |i| b >> (7 - i) & 1 == 1)).collect()
    }

    fn bytes_of(bits: &[bool]) -> Vec<u8> {
        bits.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |b, (i, &x)| b | (u8::from(x) << (7 - i)))).collect()
    }

    /// The body of the one block of a standard bzip2 stream of `data` (what follows the block
    /// magic, its CRC and the randomised bit, up to the end-of-stream magic), by bzip2's own
    /// encoder.
    fn block_body(data: &[u8]) -> Vec<bool> {
        let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        w.write_all(data).unwrap();
        let stream = bits_of(&w.finish().unwrap());
        let end_magic = bits_of(&[0x17, 0x72, 0x45, 0x38, 0x50, 0x90]);
        let end = (0..stream.len() - 48).rev().find(|&i| stream[i..i + 48] == end_magic[..]).unwrap();
        stream[32 + 48 + 32 + 1..end].to_vec()
    }

    /// NSIS's form: each body after a `0x31` byte, then `0x17`.
    fn nsis(bodies: &[Vec<bool>]) -> Vec<u8> {
        let mut bits = Vec::new();
        for body in bodies {
            bits.extend(bits_of(&[0x31]));
            bits.extend(body);
        }
        bits.extend(bits_of(&[0x17]));
        bytes_of(&bits)
    }

    /// Text with runs (the first run-length coding, and runs of zeros after move-to-front) and
    /// varied bytes (several Huffman tables and selectors).
    fn sample(n: usize, seed: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut x = seed;
        while out.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            match x >> 28 {
                0..=3 => out.extend(std::iter::repeat_n(b'a' + (x >> 8) as u8 % 26, (x >> 16) as usize % 300)),
                4..=9 => out.extend(format!("line {} of the sample ", x % 997).bytes()),
                _ => out.push((x >> 8) as u8),
            }
        }
        out.truncate(n);
        out
    }

    fn decode(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Reader::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn blocks_of_bzip2s_encoder_in_nsis_form_decode() {
        let (a, b) = (sample(300_000, 1), sample(200_000, 2));
        assert_eq!(decode(&nsis(&[block_body(&a)])).unwrap(), a);
        let both = decode(&nsis(&[block_body(&a), block_body(&b)])).unwrap();
        assert_eq!(both.len(), a.len() + b.len());
        assert!(both == [a.clone(), b].concat());
        // one byte, and a long run of one byte (counts of 251 after every four)
        assert_eq!(decode(&nsis(&[block_body(b"x")])).unwrap(), b"x");
        let run = vec![7u8; 100_000];
        assert_eq!(decode(&nsis(&[block_body(&run)])).unwrap(), run);
        // the standard stream itself is not NSIS's
        let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        w.write_all(&a).unwrap();
        assert!(decode(&w.finish().unwrap()).is_err());
    }

    /// Writes bits, most significant first.
    struct BitWriter(Vec<bool>);

    impl BitWriter {
        fn put(&mut self, v: u32, n: u32) {
            self.0.extend((0..n).rev().map(|i| v >> i & 1 == 1));
        }
    }

    /// A stream of many one-byte blocks, each declaring all 256 symbols and six Huffman tables
    /// (the most set-up work per input bit): decoded in time proportional to its size.
    #[test]
    fn many_small_blocks_cost_their_size() {
        let mut w = BitWriter(Vec::new());
        let blocks = 20_000;
        for _ in 0..blocks {
            w.put(0x31, 8);
            w.put(0, 24); // original pointer
            w.put(0xffff, 16);
            for _ in 0..16 {
                w.put(0xffff, 16);
            }
            w.put(6, 3); // tables
            w.put(1, 15); // one selector: table 0
            w.put(0, 1);
            for _ in 0..6 {
                // 258 symbols: lengths 9 for all (a complete code needs 2^9 >= 258)
                w.put(9, 5);
                for _ in 0..258 {
                    w.put(0, 1);
                }
            }
            // RUNA (code 0 of length 9), then end of block (symbol 257: the 258th code)
            w.put(0, 9);
            w.put(257, 9);
        }
        w.put(0x17, 8);
        let stream = bytes_of(&w.0);
        let started = std::time::Instant::now();
        let out = decode(&stream).unwrap();
        assert_eq!(out, vec![0u8; blocks]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        // and the scan's clock stops it, though it gives few bytes (a block each read)
        let limits = crate::limits::Limits { max_time: std::time::Duration::ZERO, ..Default::default() };
        let r = crate::unpack::read_bounded(Reader::new(&stream), &mut crate::limits::Budget::new(limits), None);
        assert!(matches!(r, Err(crate::unpack::ReadError::Limit(crate::limits::Limit::Time { .. }))), "{r:?}");
    }

    /// Every cut of a stream and flips of its bytes: an error or some output, never a panic,
    /// never more than a block's worth of symbols from one block.
    #[test]
    fn damage_is_an_error_in_bounded_work() {
        let data = sample(20_000, 3);
        let stream = nsis(&[block_body(&data)]);
        for cut in 0..stream.len() {
            let _ = decode(&stream[..cut]);
        }
        for at in 0..stream.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut bad = stream.clone();
                bad[at] ^= bit;
                let mut out = Vec::new();
                let _ = Reader::new(&bad).take(64 << 20).read_to_end(&mut out);
                assert!(out.len() <= BLOCK_MAX * 256, "{at}");
            }
        }
        assert!(decode(&[0x31]).is_err());
        assert!(decode(&[0x42]).is_err());
        assert_eq!(decode(&[0x17]).unwrap(), b"");
    }
}
