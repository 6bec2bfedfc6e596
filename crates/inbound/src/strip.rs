//! Removing header fields we own (`X-Virus-Scanned`, `X-Mxshield-Scan`) from incoming
//! messages as they stream in, so that nobody outside can forge a scan result.

use mime::header::FieldDropper;

/// Header fields mxshield adds and therefore never accepts from outside.
pub const OWN_FIELDS: [&str; 2] = ["x-virus-scanned", "x-mxshield-scan"];

/// A streaming dropper of [`OWN_FIELDS`].
pub fn own_fields() -> FieldDropper {
    FieldDropper::new(&OWN_FIELDS)
}
