// Copies the C/C++ API headers that wasmtime-c-api-impl installs (with a conf.h matching
// the enabled features) to $WASMLET_WASMTIME_INCLUDE_OUT, where CMake picks them up.
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create include dir");
    for entry in std::fs::read_dir(from).expect("read include dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy header");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=WASMLET_WASMTIME_INCLUDE_OUT");
    let include = std::env::var("DEP_WASMTIME_C_API_INCLUDE")
        .expect("wasmtime-c-api-impl did not report its include directory");
    if let Ok(out) = std::env::var("WASMLET_WASMTIME_INCLUDE_OUT") {
        copy_dir(Path::new(&include), Path::new(&out));
    }
}
