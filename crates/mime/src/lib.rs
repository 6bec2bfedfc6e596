//! MIME for mxshield: parse RFC 5322 / 2045–2049 bytes into a tree of parts with byte ranges,
//! decode transfer encodings, RFC 2047 words and RFC 2231 parameters (joined before charset
//! decoding; ISO-2022-JP, Shift_JIS, EUC-JP, UTF-8 …), find uuencoded files, and rebuild a
//! message with a part removed or replaced. No I/O.
//!
//! Main items: [`parse`] → [`Message`] / [`Part`], [`Part::decoded_body`], [`Part::filename`],
//! [`decode_header`], [`uuencode::find`], [`remove_part`], [`replace_part`].

pub mod charset;
pub mod decode;
pub mod encode;
mod encoded_word;
pub mod header;
pub mod params;
mod rebuild;
mod tree;
pub mod uuencode;

pub use encoded_word::decode_header;
pub use rebuild::{apply_edits, remove_part, replace_part, to_seven_bit};
pub use tree::{MAX_DEPTH, MAX_PARTS, Message, Part, PartKind, TransferEncoding, loose_parts, parse};
