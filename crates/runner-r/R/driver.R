# The R side of the engine's R runner: a worker process running one model.
#
# Requests arrive on fd 3 and replies leave on fd 5, each frame a little-endian 32-bit byte
# length followed by one R value in R's serialization format (written by the engine in
# Rust, read here with unserialize; replies written with serialize(version = 2)). fd 4 is
# a page of memory shared with the engine: the batch number at byte 0 and the 1-based
# index of the record being scored at byte 8, so a process that dies is blamed on the
# right record. The model's console (print, cat, message, warnings) is fds 1 and 2.
#
# The model's code lives in the global environment; emit() and emitTo() come from the
# attached environment "modelop", so a model may define its own of either.

local({
  rt <- new.env()
  rt$req <- file("/dev/fd/3", open = "rb", raw = TRUE)
  rt$rep <- file("/dev/fd/5", open = "wb", raw = TRUE)
  rt$page <- tryCatch(file("/dev/fd/4", open = "r+b"), error = function(e) NULL)
  rt$fn <- list()
  # Score functions of particular input slots (`action.<slot>`), by slot number as text.
  rt$by_slot <- list()
  rt$n <- 0L
  rt$slots <- integer()
  rt$vals <- list()

  send <- function(x) {
    b <- serialize(x, NULL, xdr = FALSE, version = 2L)
    writeBin(length(b), rt$rep, size = 4L, endian = "little")
    writeBin(b, rt$rep)
    flush(rt$rep)
  }
  receive <- function() {
    n <- readBin(rt$req, "integer", 1L, size = 4L, endian = "little")
    if (length(n) == 0L) return(NULL)
    unserialize(readBin(rt$req, "raw", n))
  }
  progress <- function(offset, value) {
    if (is.null(rt$page)) return(invisible())
    seek(rt$page, offset, rw = "write")
    writeBin(as.integer(value), rt$page, size = 4L, endian = "little")
    flush(rt$page)
  }
  fail <- function(kind, message, fn = "", traceback = "") {
    list(ok = FALSE, kind = kind, fn = fn, message = message, traceback = traceback)
  }

  # Outputs of the call in progress.
  out_reset <- function() {
    rt$n <- 0L
    rt$slots <- integer()
    rt$vals <- list()
  }
  out_add <- function(slot, x) {
    n <- rt$n + 1L
    rt$n <- n
    rt$slots[n] <- as.integer(slot)
    rt$vals[n] <- list(x)
  }
  # Only values made of vectors and lists can become records; anything else fails the
  # call here rather than the whole batch in the engine.
  plain <- function(x) {
    if (is.atomic(x) || is.null(x)) return(TRUE)
    if (is.list(x) && !isS4(x)) {
      for (e in x) if (!plain(e)) return(FALSE)
      return(TRUE)
    }
    FALSE
  }
  out_take <- function(result) {
    if (rt$n == 0L && result$visible && !is.null(result$value)) {
      out_add(1L, result$value)
    }
    for (v in rt$vals) {
      if (!plain(v)) {
        stop(sprintf("an output of class '%s' cannot become a record value",
                     paste(class(v), collapse = "/")), call. = FALSE)
      }
    }
    list(rt$slots, rt$vals)
  }

  modelop <- new.env()
  modelop$emit <- function(x) {
    out_add(1L, x)
    invisible(NULL)
  }
  modelop$emitTo <- function(slot, x) {
    if (!is.numeric(slot) || length(slot) != 1L || is.na(slot)) {
      stop("emitTo: the slot must be one number")
    }
    out_add(slot, x)
    invisible(NULL)
  }
  attach(modelop, name = "modelop", warn.conflicts = FALSE)

  # The calls between the driver and the error, as R's traceback() would print them.
  format_calls <- function(calls) {
    if (length(calls) == 0L) return("")
    lines <- vapply(calls, function(cl) paste(deparse(cl, nlines = 1L), collapse = ""), "")
    paste(sprintf("%d: %s", rev(seq_along(lines)), rev(lines)), collapse = "\n")
  }
  describe <- function(e) {
    call <- conditionCall(e)
    msg <- conditionMessage(e)
    if (is.null(call)) paste0("Error: ", msg)
    else paste0("Error in ", paste(deparse(call, nlines = 1L), collapse = ""), ": ", msg)
  }
  # The frames of the model's code when an error is signalled: those after the driver's
  # `.modelop_call` wrapper, without the handler's own.
  model_calls <- function() {
    cs <- sys.calls()
    marks <- which(vapply(cs, function(cl) {
      is.call(cl) && identical(cl[[1L]], as.name(".modelop_call"))
    }, TRUE))
    first <- if (length(marks)) max(marks) + 1L else 1L
    last <- length(cs) - 1L
    if (last < first) return(list())
    cs <- cs[first:last]
    # R's own frames of signalling an error from C code.
    internal <- vapply(cs, function(cl) {
      is.call(cl) && (identical(cl[[1L]], as.name(".handleSimpleError")) ||
                      identical(cl, quote(h(simpleError(msg, call)))))
    }, TRUE)
    cs[!internal]
  }
  # A wrapper that calls the model's function by its name, so messages and tracebacks
  # show `action(datum)`, not the function's body.
  wrapper <- function(name, n = NA) {
    if (is.na(n)) {
      body <- as.call(list(as.name(name), as.name("...")))
      f <- function(...) NULL
    } else {
      body <- as.call(c(list(as.name(name)), lapply(c("d", "s", "q")[seq_len(n)], as.name)))
      f <- function(d, s, q) NULL
    }
    body(f) <- body
    environment(f) <- globalenv()
    f
  }
  # Runs f(args) and returns list(ok, result = withVisible(...)) or list(ok, message, traceback).
  guarded <- function(f, args) {
    calls <- NULL
    .modelop_call <- f
    tryCatch(
      withCallingHandlers(
        list(ok = TRUE, result = withVisible(do.call(".modelop_call", args))),
        error = function(e) calls <<- model_calls()
      ),
      error = function(e) list(ok = FALSE, message = describe(e), traceback = format_calls(calls))
    )
  }

  check_packages <- function() {
    if (!file.exists("DESCRIPTION")) return(character())
    d <- tryCatch(read.dcf("DESCRIPTION"), error = function(e) NULL)
    if (is.null(d)) stop("the model's DESCRIPTION file cannot be read", call. = FALSE)
    fields <- intersect(c("Depends", "Imports"), colnames(d))
    wanted <- unlist(lapply(fields, function(f) strsplit(d[1L, f], ",", fixed = TRUE)[[1L]]))
    wanted <- trimws(sub("\\(.*$", "", trimws(wanted)))
    wanted <- unique(wanted[nzchar(wanted) & wanted != "R"])
    wanted[!vapply(wanted, requireNamespace, TRUE, quietly = TRUE)]
  }

  arity <- function(f) {
    a <- names(formals(f))
    list(n = length(setdiff(a, "...")), dots = "..." %in% a)
  }

  do_load <- function(msg) {
    missing <- tryCatch(check_packages(), error = function(e) conditionMessage(e))
    if (length(missing) == 1L && grepl(" ", missing)) return(fail("load", missing))
    if (length(missing)) {
      return(fail("load", sprintf(
        "the model needs R packages that are not installed: %s (on Debian: apt-get install %s)",
        paste(missing, collapse = ", "),
        paste0("r-cran-", tolower(gsub(".", "", missing, fixed = TRUE)), collapse = " ")
      )))
    }
    loaded <- guarded(function() {
      sys.source(msg$source, envir = globalenv(), keep.source = TRUE)
    }, list())
    if (!loaded$ok) {
      return(fail("load", paste0("the model's source cannot be run: ", loaded$message),
                  traceback = loaded$traceback))
    }
    roles <- c("init", "score", "metrics", "train", "end")
    fnames <- lapply(roles, function(r) msg[[r]])
    for (k in seq_along(msg$slot_score_slots)) {
      roles <- c(roles, paste0("slot ", msg$slot_score_slots[k], " score"))
      fnames <- c(fnames, list(msg$slot_score_names[k]))
    }
    for (r in seq_along(roles)) {
      role <- roles[r]
      name <- fnames[[r]]
      if (is.null(name)) next
      f <- get0(name, envir = globalenv(), mode = "function", inherits = FALSE)
      if (is.null(f)) {
        if (role == "end") next
        return(fail("load", sprintf("the %s function '%s' is not defined by the model", role, name)))
      }
      a <- arity(f)
      scoring <- role == "score" || grepl("^slot [0-9]+ score$", role)
      if (scoring && !a$dots && !(a$n %in% 1:3)) {
        return(fail("load", sprintf(
          "the score function %s takes %d arguments; a score function takes 1 (datum), 2 (datum, slot) or 3 (datum, slot, seqno)",
          name, a$n)))
      }
      if (role == "init" && !a$dots && a$n > 1L) {
        return(fail("load", sprintf("the init function %s takes %d arguments; it takes 0 or 1", name, a$n)))
      }
      n <- if (a$dots && a$n == 0L) 1L else min(a$n, 3L)
      call <- if ((scoring || role == "init") && !a$dots) wrapper(name, n) else wrapper(name)
      entry <- list(name = name, f = call, n = n)
      if (role == "score" || !scoring) rt$fn[[role]] <- entry
      else rt$by_slot[[as.character(msg$slot_score_slots[r - 5L])]] <- entry
    }
    list(ok = TRUE, info = c("R", paste(R.version$major, R.version$minor, sep = ".")))
  }

  do_init <- function(msg) {
    init <- rt$fn$init
    if (is.null(init)) return(list(ok = TRUE))
    args <- list()
    if (init$n >= 1L) {
      arg <- list(rawJson = msg$raw)
      parsed <- if (requireNamespace("jsonlite", quietly = TRUE)) {
        tryCatch(jsonlite::fromJSON(msg$raw, simplifyVector = FALSE), error = function(e) NULL)
      }
      arg[[msg$kind]] <- parsed
      args <- list(arg)
    }
    r <- guarded(init$f, args[seq_len(init$n)])
    if (!r$ok) return(fail("failed", r$message, init$name, r$traceback))
    list(ok = TRUE)
  }

  # The record (1-based position in the batch) each row of an output data.frame comes
  # from: its row names when they are positions of the batch, else its own position when
  # it has as many rows as the batch.
  frame_owners <- function(df, n) {
    k <- suppressWarnings(as.integer(attr(df, "row.names")))
    if (length(k) == nrow(df) && !anyNA(k) && all(k >= 1L & k <= n)) return(k)
    if (nrow(df) == n) return(seq_len(n))
    stop(sprintf(paste(
      "the model returned a data.frame of %d rows for a batch of %d records and its row",
      "names do not say which record each row comes from: keep the input data.frame's row",
      "names (1..n, the records' positions) on the rows it returns"), nrow(df), n), call. = FALSE)
  }

  # A batch of a record-set slot: one call with the whole batch as a data.frame. Each row
  # of an output data.frame goes to the record it comes from, other outputs to the first
  # record; an error fails every record of the batch.
  do_score_frame <- function(msg, score) {
    n <- length(msg$slots)
    progress(0L, msg$batch)
    progress(8L, 1L)
    out_reset()
    r <- guarded(score$f, list(msg$frame, msg$slots[1L], msg$seqnos[1L])[seq_len(score$n)])
    per <- NULL
    if (r$ok) {
      per <- tryCatch({
        taken <- out_take(r$result)
        per <- rep(list(list(integer(), list())), n)
        add <- function(o, s, v) {
          m <- length(per[[o]][[1L]]) + 1L
          per[[o]][[1L]][m] <<- as.integer(s)
          per[[o]][[2L]][m] <<- list(v)
        }
        for (k in seq_along(taken[[2L]])) {
          v <- taken[[2L]][[k]]
          s <- taken[[1L]][k]
          if (is.data.frame(v)) {
            owners <- frame_owners(v, n)
            for (j in seq_len(nrow(v))) add(owners[j], s, lapply(v, function(col) col[[j]]))
          } else if (n > 0L) {
            add(1L, s, v)
          }
        }
        per
      }, error = function(e) {
        r <<- list(ok = FALSE, message = describe(e), traceback = "")
        NULL
      })
    }
    progress(8L, 0L)
    if (!r$ok) {
      return(list(ok = TRUE, status = logical(n), outs = rep(list(c(r$message, r$traceback)), n)))
    }
    list(ok = TRUE, status = rep(TRUE, n), outs = per)
  }

  do_score <- function(msg) {
    score <- rt$fn$score
    if (is.null(score)) return(fail("load", "the model has no score function"))
    if (!is.null(msg$frame)) {
      own <- rt$by_slot[[as.character(msg$slots[1L])]]
      return(do_score_frame(msg, if (is.null(own)) score else own))
    }
    recs <- msg$records
    slots <- msg$slots
    seqnos <- msg$seqnos
    n <- length(recs)
    .modelop_call <- score$f
    na <- score$n
    ok <- logical(n)
    outs <- vector("list", n)
    progress(0L, msg$batch)
    i <- 1L
    calls <- NULL
    by_slot <- rt$by_slot
    pick <- function(slot) {
      own <- by_slot[[as.character(slot)]]
      if (is.null(own)) score$f else own$f
    }
    # One tryCatch around the whole loop, re-entered after a failing record, so a batch
    # with no failure pays for no handler per record.
    while (i <= n) {
      tryCatch(
        withCallingHandlers({
          while (i <= n) {
            progress(8L, i)
            out_reset()
            if (length(by_slot)) .modelop_call <- pick(slots[i])
            r <- withVisible(.modelop_call(recs[[i]], slots[i], seqnos[i]))
            outs[[i]] <- out_take(r)
            ok[i] <- TRUE
            i <- i + 1L
          }
        }, error = function(e) calls <<- model_calls()),
        error = function(e) {
          outs[[i]] <<- c(describe(e), format_calls(calls))
          calls <<- NULL
          i <<- i + 1L
        }
      )
    }
    progress(8L, 0L)
    list(ok = TRUE, status = ok, outs = outs)
  }

  # Records for metrics or train arrive a batch at a time (a data.frame each), so the
  # engine never holds them all; they are bound into one data.frame per slot when the
  # function is called.
  collected <- list()
  do_collect <- function(msg) {
    key <- as.character(msg$slot)
    batches <- collected[[key]]
    if (is.null(batches)) batches <- list()
    batches[[length(batches) + 1L]] <- msg$frame
    collected[[key]] <<- batches
    list(ok = TRUE)
  }

  # Missing in every row of a batch: the column takes its type from the other batches.
  all_missing <- function(v) {
    if (is.list(v)) all(vapply(v, is.null, logical(1))) else all(is.na(v))
  }

  # One column over every batch, as if built from all the records at once: atomic when the
  # batches agree on one kind (integer and double make double), a list column otherwise.
  bind_column <- function(parts, rows) {
    present <- !vapply(parts, is.null, logical(1))
    kinds <- unique(vapply(parts[present], typeof, character(1)))
    atomic <- length(kinds) == 0L || all(kinds %in% c("integer", "double")) ||
      (length(kinds) == 1L && kinds != "list")
    cells <- lapply(seq_along(parts), function(i) {
      if (!present[[i]]) {
        if (atomic) rep(NA, rows[[i]]) else vector("list", rows[[i]])
      } else if (atomic) {
        parts[[i]]
      } else {
        as.list(parts[[i]])
      }
    })
    do.call(c, cells)
  }

  # The batches of a slot as one data.frame: columns in first-seen order, a column a batch
  # lacks is NA (or NULL in a list column) there.
  bind_batches <- function(batches) {
    if (length(batches) == 1L) return(batches[[1L]])
    rows <- vapply(batches, nrow, integer(1))
    cols <- unique(unlist(lapply(batches, names)))
    out <- lapply(cols, function(col) {
      parts <- lapply(batches, function(b) {
        v <- b[[col]]
        if (is.null(v) || all_missing(v)) NULL else v
      })
      bind_column(parts, rows)
    })
    names(out) <- cols
    structure(out, class = "data.frame", row.names = c(NA_integer_, -sum(rows)))
  }

  do_run_all <- function(msg) {
    which <- msg$fn
    entry <- rt$fn[[which]]
    if (is.null(entry)) return(fail("load", sprintf("the model has no %s function", which)))
    if (which == "train") dir.create("outputDir", showWarnings = FALSE)
    slots <- names(collected)
    frames <- lapply(slots[order(as.integer(slots))], function(k) bind_batches(collected[[k]]))
    collected <<- list()
    args <- if (entry$n == 0L) list() else frames
    out_reset()
    r <- guarded(entry$f, args)
    if (r$ok) {
      r <- tryCatch(list(ok = TRUE, outs = out_take(r$result)),
                    error = function(e) list(ok = FALSE, message = describe(e), traceback = ""))
    }
    if (!r$ok) return(fail("failed", r$message, entry$name, r$traceback))
    list(ok = TRUE, outs = r$outs)
  }

  do_end <- function(msg) {
    end <- rt$fn$end
    if (is.null(end)) return(list(ok = TRUE))
    r <- guarded(end$f, list())
    if (!r$ok) return(fail("failed", r$message, end$name, r$traceback))
    list(ok = TRUE)
  }

  options(warn = 1L)
  send(list(ok = TRUE, pid = Sys.getpid()))
  repeat {
    msg <- receive()
    if (is.null(msg)) break
    reply <- switch(msg$op,
      load = do_load(msg),
      init = do_init(msg),
      score = do_score(msg),
      collect = do_collect(msg),
      run_all = do_run_all(msg),
      end = do_end(msg),
      fail("worker", paste("unknown request", msg$op)))
    send(reply)
    if (identical(msg$op, "end")) break
  }
  invisible()
})
quit(save = "no", status = 0L)
