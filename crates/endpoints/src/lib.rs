//! Input and output endpoints: files, inline data, discard.
