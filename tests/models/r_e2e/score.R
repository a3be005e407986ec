# An R model run through `engine run`: doubles x, fails on x == 3, prints on begin.
begin <- function() {
  cat("R model ready\n")
}

action <- function(datum) {
  if (datum$x == 3) stop("three is not allowed")
  emit(list(x = datum$x, y = datum$x * 2))
}

# modelop.metrics
summarise <- function(df) {
  list(rows = nrow(df), mean_x = mean(df$x))
}
