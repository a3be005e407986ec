#!/usr/bin/env Rscript
# Writes the R serialization fixtures under crates/runner-r/tests/data/: each value serialized
# by R itself, the way the R worker's driver (crates/runner-r/R/driver.R) writes its replies,
# `serialize(x, NULL, xdr = FALSE, version = 2L)`, plus a few in the other forms R can write
# (XDR, version 3). The expected record values, and the values the engine's writer must
# encode to the same bytes, are spelled out in crates/runner-r/tests/rds.rs; change both
# together.
#
#     Rscript scripts/make-r-fixtures.R

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grepl("^--file=", args)])
out <- file.path(dirname(normalizePath(script)), "..", "crates", "runner-r", "tests", "data")
dir.create(out, showWarnings = FALSE, recursive = TRUE)

write <- function(name, x, xdr = FALSE, version = 2L) {
  writeBin(serialize(x, NULL, xdr = xdr, version = version), file.path(out, name))
}

latin1 <- "caf\xe9"
Encoding(latin1) <- "latin1"

values <- list(
  null = NULL,
  logical = c(TRUE, FALSE, NA),
  integer = c(1L, NA, -7L, 2147483647L),
  double = c(1.5, NA, -0, 1e300, 3, Inf),
  character = c("a", NA, "\u00e9t\u00e9", ""),
  latin1 = latin1,
  raw = as.raw(c(0, 255, 16)),
  named_list = list(a = 1L, b = "x", c = list(TRUE, NULL)),
  nested_names = list(outer = list(inner = list(deep = 2.5))),
  named_vector = c(a = 1.5, b = 2),
  factor = factor(c("lo", "hi", "lo", NA), levels = c("lo", "hi")),
  matrix = matrix(c(1L, 2L, 3L, 4L, 5L, 6L), nrow = 2),
  data_frame = data.frame(x = c(1L, 2L), y = c("a", "b"), z = c(0.5, NA)),
  complex = complex(real = 1, imaginary = 2),
  closure = function(x) x,
  # What the engine's writer must produce to the byte (see rds.rs, `written_like_r`).
  write_int = 5L,
  write_double = 2.5,
  write_bool = TRUE,
  write_string = "h\u00e9",
  write_raw = as.raw(c(1, 2)),
  write_ints = c(1L, 2L, 3L),
  write_doubles = c(1, 2.5),
  write_logicals = c(TRUE, NA),
  write_strings = c("a", NA),
  write_list = list(1L, "x"),
  write_map = list(a = 1L, b = "x", c = list(x = c(1.5, 2))),
  write_frame = data.frame(x = c(1L, 2L), y = c("a", "b"))
)
for (name in names(values)) {
  write(paste0(name, ".bin"), values[[name]])
}
write("named_list.xdr.bin", values$named_list, xdr = TRUE)
write("named_list.v3.bin", values$named_list, version = 3L)
# Version 3 keeps 1:10 compact (ALTREP), which the engine refuses by name.
write("altrep.v3.bin", 1:10, version = 3L)
