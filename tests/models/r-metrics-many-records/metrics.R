# An R metrics model over many records: counts them, sums x, and checks the text column
# came through whole.
action <- function(datum) {
  emit(datum)
}

# modelop.metrics
summarise <- function(df) {
  list(rows = nrow(df), sum_x = sum(as.numeric(df$x)), text_chars = sum(nchar(df$text)))
}
