action <- function(datum) datum
