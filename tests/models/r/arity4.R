action <- function(a, b, c, d) a
