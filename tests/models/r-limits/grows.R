# An R model whose record with x = 2 allocates about 640 MiB, 80 MiB at a time (then gives
# up and echoes it, so an engine that does not stop it lets the record through); every
# other record is echoed.
action <- function(datum) {
  if (isTRUE(datum$x == 2)) {
    held <- list()
    for (i in 1:8) {
      held[[i]] <- numeric(1e7)
      Sys.sleep(0.1)
    }
  }
  datum
}
