// Embeds the interpreter PYO3_PYTHON names: the rpath makes the worker binary and the tests
// load that interpreter's libpython (not the system one) with no environment variables.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
