//! The engine side of a model worker process: spawning, the framed protocol, supervision.
