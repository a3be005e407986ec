# An R model that loops forever on the record with x = 3 (or with hang = TRUE) and echoes
# every other record: for the per-record time limit.
action <- function(datum) {
  if (isTRUE(datum$hang) || isTRUE(datum$x == 3)) repeat {}
  datum
}
