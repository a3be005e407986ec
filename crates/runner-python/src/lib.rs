//! The Python language runner: CPython embedded in a worker process with pyo3.
