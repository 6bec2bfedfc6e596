//! Writes the normalised forms of an HTML file as libclamav names them (`nocomment.html`,
//! `notags.html`, `javascript`) into a directory, to compare with what
//! `clamscan --leave-temps` writes: `cargo run -p mxshield-scan --example html_forms FILE DIR`.

use mxshield_scan as scan;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, dir] = args.as_slice() else {
        eprintln!("usage: html_forms FILE DIR");
        std::process::exit(2);
    };
    let n = scan::html::normalise(&std::fs::read(file)?);
    std::fs::create_dir_all(dir)?;
    std::fs::write(format!("{dir}/nocomment.html"), &n.nocomment)?;
    std::fs::write(format!("{dir}/notags.html"), &n.notags)?;
    if !n.javascript.is_empty() {
        std::fs::write(format!("{dir}/javascript"), &n.javascript)?;
    }
    Ok(())
}
