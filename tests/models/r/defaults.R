# begin/action/end by their default names; begin sets a global with <<-.
begin <- function() {
  bias <<- 10
}

action <- function(datum) {
  emit(list(id = datum$id, y = datum$x + bias, name = datum$name))
}

end <- function() {
  cat("end called\n")
}
