start_here <- function() {
  message("starting")
  print(c(a = 1, b = 2))
}

score_it <- function(x) {
  cat("scoring", x$id, "\n")
  if (identical(x$id, 2L)) stop("bad record ", x$id)
  if (identical(x$id, 4L)) warning("odd record")
  x$ok <- TRUE
  x
}

nothing <- function(x) {
  y <- x
}
