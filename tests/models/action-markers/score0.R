# modelop.score.0: predict
# modelop.init: setup
setup <- function() {
  assign("factor3", 3, envir = globalenv())
}

predict <- function(datum) list(by = "predict", x = datum$x * factor3)
