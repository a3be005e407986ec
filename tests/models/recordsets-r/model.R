# A record-set R model: each batch arrives as one data.frame; multiples of 7 are dropped.
# modelop.recordsets.0: true
# modelop.recordsets.1: true

# modelop.score
score_batch <- function(df) {
  keep <- df[df$x %% 7 != 0, , drop = FALSE]
  keep$y <- keep$x * 10
  keep$batch_size <- rep(nrow(df), nrow(keep))
  keep[, c("x", "y", "batch_size")]
}
