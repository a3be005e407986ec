action <- function(datum) {
  if (identical(datum$id, 3L)) quit(save = "no", status = 3)
  if (identical(datum$id, 5L)) tools::pskill(Sys.getpid())
  datum
}
