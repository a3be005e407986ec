# An R model that writes its process id to the file the record names, then spins.
action <- function(datum) {
  writeLines(as.character(Sys.getpid()), datum$spin)
  repeat {}
}
