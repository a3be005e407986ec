# Keeps a running count across records: the n-th record scored gets n.
begin <- function() {
  count <<- 0
}

action <- function(datum) {
  count <<- count + 1
  emit(list(id = datum$id, n = count))
}
