# fastscore.action.0: predict
action <- function(datum) stop("the default name must not be used")

predict <- function(datum) {
  emit(list(by = "predict", x = datum$x))
}
