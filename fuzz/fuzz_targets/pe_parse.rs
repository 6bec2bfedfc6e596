//! The PE header reader, the import table walk and the ELF and Mach-O header readers: any bytes give a
//! header or none, a table text or none, never a panic; executable-aware signatures over them
//! match or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn signatures() -> &'static scan::Signatures {
    static SIGS: OnceLock<scan::Signatures> = OnceLock::new();
    SIGS.get_or_init(|| {
        let mut db = scan::sigdb::SigDb::default();
        let ndb = "Ep:1:EP+0:4d5a\nSec:1:S1+4,100:4142\nLast:1:SL+0:4142??44\nWhole:1:SE0:41??4344\nEnd:0:EOF-4:41424344\n";
        db.load_file("f.ndb", ndb.as_bytes()).unwrap();
        db.load_file("f.mdb", b"*:44d88612fea8a8f36de82e1278abb02f:Sect:73\n").unwrap();
        db.load_file("f.imp", b"44d88612fea8a8f36de82e1278abb02f:*:Imp:73\n").unwrap();
        let ldb = "L;Engine:81-255,Target:1,EntryPoint:0-4096,NumberOfSections:1-9;0&1;4142;EP+0:0/MZ/\n";
        db.load_file("f.ldb", ldb.as_bytes()).unwrap();
        scan::Signatures::compile(db.finished())
    })
}

fuzz_target!(|data: &[u8]| {
    let mut pe = b"MZ".to_vec();
    pe.extend_from_slice(data);
    if let Some(info) = scan::pe::parse(&pe) {
        let _ = info.import_table(&pe);
    }
    let _ = signatures().check(&pe, scan::FileType::Pe);
    // the same bytes as an ELF file
    let mut elf = b"\x7fELF".to_vec();
    elf.extend_from_slice(data);
    let _ = scan::elf::parse(&elf);
    let _ = signatures().check(&elf, scan::FileType::Elf);
    // and as Mach-O, 64-bit little-endian and 32-bit big-endian
    for magic in [[0xcf, 0xfa, 0xed, 0xfe], [0xfe, 0xed, 0xfa, 0xce]] {
        let mut macho = magic.to_vec();
        macho.extend_from_slice(data);
        let _ = scan::macho::parse(&macho);
        let _ = signatures().check(&macho, scan::FileType::MachO);
    }
});
