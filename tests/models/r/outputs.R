# Returns R values of many kinds, to check their mapping to records.
action <- function(datum) {
  switch(datum$kind,
    na = list(a = NA, b = NA_real_, c = NA_character_, d = NA_integer_, e = NULL),
    nonfinite = list(nan = NaN, inf = Inf),
    vectors = list(one = 1.5, ints = 1:3, empty = character(0), named = c(a = 1, b = 2)),
    whole = list(two = 2, big = 2^60, half = 0.5),
    factor = factor(c("lo", "hi", "lo")),
    frame = data.frame(x = 1:2, y = c("a", "b")),
    matrix = matrix(1:6, nrow = 2),
    raw = as.raw(c(1, 2, 255)),
    unnamed = list(1, "a", TRUE),
    closure = function(x) x,
    env = new.env()
  )
}
