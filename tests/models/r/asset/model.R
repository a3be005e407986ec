begin <- function() {
  w <<- readRDS("weights.rds")
  tab <<- read.csv("data/table.csv")
}

action <- function(datum) {
  emit(list(score = sum(w * datum$x), rows = nrow(tab)))
}
