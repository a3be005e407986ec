begin <- function() {
  weights <<- readRDS("weights.rds")
  table <<- read.csv("data/table.csv")
}

action <- function(datum) {
  emit(list(score = sum(weights * datum$x), rows = nrow(table)))
}
