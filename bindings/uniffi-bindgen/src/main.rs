//! `uniffi-bindgen`: generates the Kotlin and Swift bindings of `sotong-ffi`, e.g.
//! `uniffi-bindgen generate --library target/debug/libsotong_ffi.so -l kotlin -o OUT`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
