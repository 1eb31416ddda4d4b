//! The decision records are read on other machines: they name no path of the machine they
//! were written on.

#[test]
fn adrs_name_no_absolute_machine_paths() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/adr");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for prefix in ["/work/", "/home/", "/root/", "/tmp/", "/Users/", "C:\\"] {
                assert!(
                    !line.contains(prefix),
                    "{}:{}: names a machine path ({prefix}): {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        read += 1;
    }
    assert!(read > 0, "no ADR found in {}", dir.display());
}
