library(stats)

# modelop.init
setup <- function(arg) {
  job <<- jsonlite::fromJSON(arg$rawJson)
}

#modelop.score
predict_one <- function(datum, slot) {
  if (slot == 0) {
    emitTo(3, list(seen = datum$id))
  }
  return(list(id = datum$id, job = job$name, slot = slot))
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
