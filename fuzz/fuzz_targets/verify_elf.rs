//! The ELF verifier (src/verify.rs): any bytes as the file given to --binary or built by cargo.

#![no_main]

use cargo_containerize::platform::Platform;
use cargo_containerize::verify::{accept, inspect_bytes};
use cargo_containerize_fuzz::{assert_printable, printed};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/binary");
    let report = match inspect_bytes(path, data) {
        Ok(r) => r,
        Err(e) => {
            assert_printable("inspect", &printed(&e));
            return;
        }
    };
    assert!(data.starts_with(b"\x7fELF"), "a non-ELF file was inspected");
    assert_eq!(report.size, data.len() as u64);
    assert_eq!(report.is_static(), report.dynamic_problem().is_none());
    let shown = report.to_string();
    assert_printable("report", &shown);
    if let Some(problem) = report.dynamic_problem() {
        assert_printable("dynamic_problem", &problem);
    }
    for platform in Platform::ALL {
        match accept(report.clone(), platform) {
            Ok(v) => {
                assert!(report.is_static(), "a dynamic binary was accepted");
                assert_eq!(report.platform, Some(platform));
                assert_eq!(platform.elf_machine(), report.machine);
                assert_eq!(v.size, report.size);
            }
            Err(e) => assert_printable("accept", &printed(&e)),
        }
    }
});
