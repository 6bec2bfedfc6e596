//! CPU per fingerprint of a 10 KiB text message (the mail path's cost of bulk metering), and of
//! a message with a 1 MiB attachment (base64).
//! `cargo run --release -p mxshield-bulk --example fingerprint_cost`
fn main() {
    let line = "The quick brown fox jumps over the lazy dog, then runs 42 miles to https://example.com/x?y=1.\r\n";
    let mut msg = String::from("Subject: test\r\nContent-Type: text/plain\r\n\r\n");
    while msg.len() < 10 * 1024 {
        msg.push_str(line);
    }
    measure(msg.as_bytes(), 20_000);
    let mut big = String::from(
        "Subject: flyer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for _ in 0..(1 << 20) * 4 / 3 / 76 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            big.push(B64[(x % 64) as usize] as char);
        }
        big.push_str("\r\n");
    }
    big.push_str("--B--\r\n");
    measure(big.as_bytes(), 200);
}

fn measure(msg: &[u8], n: u32) {
    let t = std::time::Instant::now();
    let mut x = 0usize;
    for _ in 0..n {
        let fp = mxshield_bulk::fingerprint(msg);
        x ^= fp.attachments.len() + fp.minhash.map_or(0, |m| m[0] as usize);
    }
    let per = t.elapsed().as_secs_f64() / f64::from(n) * 1e6;
    println!("fingerprint of a {} byte message: {per:.1} us ({x:x})", msg.len());
}
