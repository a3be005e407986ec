//! Encodings (JSON, CSV, Avro, MessagePack, UTF-8, raw) and framings: bytes to records and back.
