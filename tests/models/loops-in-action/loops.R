# An R model whose action loops forever on a record with loop = TRUE and echoes every
# other record with the worker's pid: for the service's per-record timeout.
action <- function(datum) {
  if (isTRUE(datum$loop)) repeat {}
  datum$pid <- Sys.getpid()
  datum
}
