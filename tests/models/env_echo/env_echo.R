# An R model that answers with the names of the environment variables its worker sees.
action <- function(datum) {
  emit(list(names = sort(names(Sys.getenv()))))
}
