//! uuencoded files inside text bodies (`begin 644 name` … `end`).

use crate::header::{line_end, trim_eol};

/// A file found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UuFile {
    /// The name on its `begin` line.
    pub name: String,
    /// The decoded bytes.
    pub data: Vec<u8>,
}

/// The uuencoded files in `text`, decoded one at a time as the caller asks for them (a text
/// of a million tiny files costs the memory of one, and the caller can stop at its limit).
pub fn find(text: &[u8]) -> UuFiles<'_> {
    UuFiles { text, pos: 0 }
}

/// Iterator over the uuencoded files of a text ([`find`]).
#[derive(Debug, Clone)]
pub struct UuFiles<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Iterator for UuFiles<'_> {
    type Item = UuFile;

    fn next(&mut self) -> Option<UuFile> {
        let text = self.text;
        let mut current: Option<UuFile> = None;
        while self.pos < text.len() {
            let next = line_end(text, self.pos, text.len());
            let line = trim_eol(&text[self.pos..next]);
            self.pos = next;
            match current.as_mut() {
                None => {
                    if let Some(name) = begin_line(line) {
                        current = Some(UuFile { name, data: Vec::new() });
                    }
                }
                Some(file) => {
                    if line == b"end" || line.starts_with(b"end ") {
                        return current;
                    } else if !line.is_empty() {
                        decode_line(line, &mut file.data);
                    }
                }
            }
        }
        current.filter(|f| !f.data.is_empty())
    }
}

fn begin_line(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"begin ")?;
    let mut it = rest.splitn(2, |&b| b == b' ');
    let mode = it.next()?;
    if mode.is_empty() || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let name = it.next().unwrap_or_default();
    Some(String::from_utf8_lossy(name).trim().to_string())
}

fn decode_line(line: &[u8], out: &mut Vec<u8>) {
    let n = usize::from(line[0].wrapping_sub(32) & 63);
    if n == 0 {
        return;
    }
    let chars: Vec<u8> = line[1..].iter().map(|&c| c.wrapping_sub(32) & 63).collect();
    let mut produced = Vec::with_capacity(n + 2);
    for q in chars.chunks(4) {
        let g = |i: usize| u32::from(*q.get(i).unwrap_or(&0));
        let v = (g(0) << 18) | (g(1) << 12) | (g(2) << 6) | g(3);
        produced.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    produced.truncate(n);
    out.extend_from_slice(&produced);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_file() {
        // "hello world\n" uuencoded
        let text = b"some text\nbegin 644 hi.txt\n,:&5L;&\\@=V]R;&0*\n`\nend\nmore text\n";
        let files: Vec<UuFile> = find(text).collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "hi.txt");
        assert_eq!(files[0].data, b"hello world\n");
        assert!(find(b"begin here\nnot uu\n").next().is_none());
        let many = "begin 644 a\n#86)C\n`\nend\n".repeat(3);
        assert_eq!(find(many.as_bytes()).map(|f| f.data).collect::<Vec<_>>(), vec![b"abc".to_vec(); 3]);
    }
}
