// The engine binary embeds CPython (its worker mode runs Python models): link it against the
// libpython of the interpreter PYO3_PYTHON names and record that library's folder as the
// binary's rpath, so `env -i engine` loads the same CPython that `python3` runs. Model
// environments are built for that same interpreter: its path is compiled in.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    if let Some(exe) = config.executable() {
        println!("cargo:rustc-env=ENGINE_PYTHON={exe}");
    }
}
