# Returns facts about the datum, to check the mapping of record values to R.
action <- function(datum) {
  list(
    class = class(datum),
    names = names(datum),
    types = lapply(datum, function(v) class(v)[1]),
    lengths = lapply(datum, length),
    echo = datum
  )
}
