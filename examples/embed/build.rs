// This binary is its own Python worker (`embed worker`, which runs
// `runner_python::worker_main`): link it against the libpython of the interpreter
// PYO3_PYTHON names, with that library's folder as its rpath, as the engine binary does.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
