//! CPU per fingerprint of a 10 KiB text message (the mail path's cost of bulk metering).
//! `cargo run --release -p mxshield-bulk --example fingerprint_cost`
fn main() {
    let line = "The quick brown fox jumps over the lazy dog, then runs 42 miles to https://example.com/x?y=1.\r\n";
    let mut msg = String::from("Subject: test\r\nContent-Type: text/plain\r\n\r\n");
    while msg.len() < 10 * 1024 {
        msg.push_str(line);
    }
    let n = 20_000;
    let t = std::time::Instant::now();
    let mut x = 0u64;
    for _ in 0..n {
        let fp = mxshield_bulk::fingerprint(msg.as_bytes());
        x ^= fp.minhash.map_or(0, |m| m[0]);
    }
    let per = t.elapsed().as_secs_f64() / f64::from(n) * 1e6;
    println!("fingerprint of a {} byte message: {per:.1} us ({x:x})", msg.len());
}
