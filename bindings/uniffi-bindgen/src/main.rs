//! uniffi-bindgen, built from the workspace so that the generator is always
//! the very version of uniffi the library links (a mismatch fails at load
//! time with a checksum error). See scripts/build-bindings.sh.

fn main() {
    uniffi::uniffi_bindgen_main()
}
