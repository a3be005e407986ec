# FastScore per-slot callbacks: slot 0 and slot 2 each have their own function.
# fastscore.action.0: on_left
# fastscore.action.2: on_right
# fastscore.slot.2: in-use

on_left <- function(datum) {
  emit(list(side = "left", x = datum$x))
}

on_right <- function(datum, slot) {
  emit(list(side = "right", slot = slot, x = datum$x))
}
