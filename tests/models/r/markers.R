library(stats)

# modelop.init
setup <- function(arg) {
  job <<- jsonlite::fromJSON(arg$rawJson)
}

#modelop.score
predict_one <- function(datum, slot) {
  out <- list(id = datum$id, job = job$name, slot = slot)
  if (slot == 0) {
    # Once the function emits, its return value is not an output.
    emitTo(3, list(seen = datum$id))
    emit(out)
    return("not an output")
  }
  return(out)
}

# modelop.metrics
evaluate <- function(baseline, sample) {
  list(
    rows = c(nrow(baseline), nrow(sample)),
    mean_x = mean(baseline$x),
    columns = names(sample),
    classes = vapply(sample, function(c) class(c)[1], "")
  )
}

# modelop.train
fit <- function(df) {
  model <- lm(y ~ x, data = df)
  saveRDS(coef(model), "outputDir/coefficients.rds")
  writeLines(format(nrow(df)), "outputDir/rows.txt")
  list(trained_on = nrow(df))
}
