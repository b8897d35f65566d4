# Reference values from R's mclust with a background-noise component (mclust's Vinv), for
# tests/core/test_mclust_noise_reference.py.
#
# Run once, from anywhere (the tests only read the JSON and the CSV; they never need R):
#   apt-get install -y r-cran-mclust r-cran-jsonlite
#   Rscript tests/data/mclust/make_noise_references.R
# Writes, beside this script: faithful_noise.csv and noise_references.json (about 1 min).
#
# Data: Old Faithful (R datasets::faithful, equal to bayesgmm/data/faithful.csv) and 30
# points uniform on its bounding box widened by half a range on each side (seeded below).
# The background is uniform on the bounding box of all 302 rows, V = prod of the ranges,
# which is what bayesgmm's noise=True takes (mclust's default, hypvol(), is the smaller
# of that box and a box along the principal components, so Vinv is given explicitly).
#
# Two kinds of reference per (model, K), as in make_references.R:
# - "hc": what mclust reports, Mclust(X, G, model, initialization = list(noise = ...),
#   Vinv = 1 / V), its hierarchical start on the points not guessed as noise; the guess is
#   the 30 scattered points themselves (the best guess there is);
# - "random": the best of `n_random` runs of mclust's EM, me(model, X, z, Vinv = 1 / V),
#   from random soft memberships of the K components and the background.
suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", "..", ".."))
set.seed(20261207)

models <- mclust.options("emModelNames")  # the 14 multivariate models
G_range <- 1:4
n_random <- 40

faithful_repo <- read.csv(file.path(root, "bayesgmm", "data", "faithful.csv"))
stopifnot(isTRUE(all.equal(as.matrix(faithful_repo), as.matrix(faithful),
                           check.attributes = FALSE, tolerance = 0)))
X0 <- as.matrix(faithful)
lo <- apply(X0, 2, min)
hi <- apply(X0, 2, max)
half <- (hi - lo) / 2
n_out <- 30
scatter <- sapply(1:2, function(j) runif(n_out, lo[j] - half[j], hi[j] + half[j]))
X <- rbind(X0, scatter)
colnames(X) <- colnames(X0)
write.csv(data.frame(X), file.path(here, "faithful_noise.csv"), row.names = FALSE)
V <- prod(apply(X, 2, function(x) diff(range(x))))
guess <- c(rep(FALSE, nrow(X0)), rep(TRUE, n_out))

noise_df <- function(model, G) nMclustParams(model, ncol(X), G, noise = TRUE)

hc_fit <- function(model, G) {
  fit <- tryCatch(
    Mclust(X, G = G, modelNames = model, initialization = list(noise = guess),
           Vinv = 1 / V, verbose = FALSE),
    error = function(e) NULL
  )
  if (is.null(fit) || !is.finite(fit$loglik)) return(list(status = "NA"))
  list(status = "ok", loglik = fit$loglik, df = fit$df, bic = fit$bic, icl = icl(fit),
       noise_weight = unname(tail(fit$parameters$pro, 1)),
       n_noise = sum(fit$classification == 0))
}

soft_z <- function(G) {
  z <- matrix(rexp(nrow(X) * (G + 1)), nrow(X), G + 1)
  z / rowSums(z)
}

random_search <- function(model, G) {
  ll <- vapply(seq_len(n_random), function(s) {
    fit <- tryCatch(suppressWarnings(me(modelName = model, data = X, z = soft_z(G),
                                        Vinv = 1 / V)),
                    error = function(e) NULL)
    if (is.null(fit) || is.null(fit$loglik) || !is.finite(fit$loglik)) NA else fit$loglik
  }, numeric(1))
  out <- list(n_starts = n_random, n_failed = sum(is.na(ll)))
  if (all(is.na(ll))) return(out)
  best <- max(ll, na.rm = TRUE)
  c(out, list(loglik = best, bic = 2 * best - noise_df(model, G) * log(nrow(X)),
              n_hits = sum(ll > best - 0.01, na.rm = TRUE)))
}

cells <- list()
for (m in models) for (G in G_range) {
  cells[[length(cells) + 1]] <- list(model = m, K = G, df = noise_df(m, G),
                                     hc = hc_fit(m, G), random = random_search(m, G))
}

refs <- list(
  generated_by = "tests/data/mclust/make_noise_references.R",
  r_version = R.version.string,
  mclust_version = as.character(packageVersion("mclust")),
  conventions = paste("BIC = 2 logL - df log n, df counting the background's weight;",
                      "ICL = BIC + 2 sum_i log z_i,map(i), the background one of the",
                      "classes (mclust's icl()); higher is better"),
  data = "tests/data/mclust/faithful_noise.csv: faithful, then 30 scattered points",
  n = nrow(X),
  n_scattered = n_out,
  volume = V,
  models = models,
  K = G_range,
  cells = cells
)
writeLines(toJSON(refs, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE),
           file.path(here, "noise_references.json"))
cat("wrote", file.path(here, "noise_references.json"), "\n")
