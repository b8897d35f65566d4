# Reference values from R's mclust for tests/core/test_mclust_reference.py.
#
# Run once, from anywhere (the tests only read the JSON; they never need R):
#   apt-get install -y r-cran-mclust r-cran-mass r-cran-jsonlite
#   Rscript tests/data/mclust/make_references.R [path/to/heplots/data/Diabetes.RData]
# Writes, beside this script: references.json, diabetes.csv, galaxies.csv (about 1 min).
# Old Faithful is bundled already (bayesgmm/data/faithful.csv) and checked equal to R's.
#
# Data:
# - faithful: R datasets::faithful (272 x 2).
# - diabetes: heplots' Diabetes (Reaven & Miller 1979), columns glufast, glutest, instest
#   (n = 145). mclust's own `diabetes` (glucose, insulin, sspg) holds the same numbers
#   except row 104, where mclust has insulin = 45 and heplots glutest = 455; mclust's
#   published results for diabetes (VVV,3: BIC -4734.561, logL -2295.118) are those of the
#   heplots values. The CSV is mclust's copy with that one value corrected and, when the
#   path of heplots' data/Diabetes.RData is given (github friendly/heplots), checked equal
#   to it.
# - galaxies: MASS::galaxies / 1000 (n = 82, 1-D).
#
# Two kinds of reference per (model, K):
# - "hc": what mclust reports (Mclust / mclustBIC: EM from its hierarchical start);
# - "random": the best of `n_random` further EM runs (mclust's `me`), half from k-means
#   partitions with random centres on the standardised data, half from random soft
#   responsibilities. These find higher likelihoods than the hierarchical start in many
#   cells, so "the best fit" and "mclust's reported fit" are not always the same.
suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", "..", ".."))
trailing <- commandArgs(trailingOnly = TRUE)
set.seed(20240518)

models <- mclust.options("emModelNames")  # the 14 multivariate models
G_range <- 1:9
n_random <- 60

# ---------------------------------------------------------------- data
faithful_repo <- read.csv(file.path(root, "bayesgmm", "data", "faithful.csv"))
stopifnot(isTRUE(all.equal(as.matrix(faithful_repo), as.matrix(faithful),
                           check.attributes = FALSE, tolerance = 0)))
X_faithful <- faithful

data(diabetes, package = "mclust")
X_diabetes <- data.frame(glufast = diabetes$glucose, glutest = diabetes$insulin,
                         instest = diabetes$sspg)
stopifnot(X_diabetes$glutest[104] == 45)
X_diabetes$glutest[104] <- 455
heplots_check <- "not checked (no path to heplots' Diabetes.RData given)"
if (length(trailing) >= 1) {
  env <- new.env()
  load(trailing[1], envir = env)
  H <- env$Diabetes[, c("glufast", "glutest", "instest")]
  stopifnot(isTRUE(all.equal(as.matrix(H), as.matrix(X_diabetes),
                             check.attributes = FALSE, tolerance = 0)))
  heplots_check <- "checked equal to heplots' Diabetes[, c('glufast', 'glutest', 'instest')]"
}
write.csv(X_diabetes, file.path(here, "diabetes.csv"), row.names = FALSE)

X_galaxies <- MASS::galaxies / 1000
write.csv(data.frame(velocity = X_galaxies), file.path(here, "galaxies.csv"),
          row.names = FALSE)

# ---------------------------------------------------------------- helpers
params_of <- function(fit) {
  p <- fit$parameters
  G <- length(p$pro)
  d <- if (is.null(dim(p$mean))) 1L else nrow(p$mean)
  sigma <- p$variance$sigma
  if (is.null(dim(sigma))) sigma <- array(p$variance$sigmasq, c(1, 1, G))
  list(
    weights = unname(as.numeric(p$pro)),
    means = unname(lapply(seq_len(G), function(k) as.numeric(matrix(p$mean, d, G)[, k]))),
    covariances = unname(lapply(seq_len(G), function(k) {
      S <- matrix(sigma[, , k], d, d)
      lapply(seq_len(d), function(i) as.numeric(S[i, ]))
    }))
  )
}

kmeans_z <- function(X, G) {
  Z <- scale(as.matrix(X))
  km <- kmeans(Z, centers = Z[sample.int(nrow(Z), G), , drop = FALSE], iter.max = 50,
               algorithm = "Lloyd")
  unmap(km$cluster, groups = seq_len(G))
}

soft_z <- function(X, G) {
  z <- matrix(rexp(NROW(X) * G), NROW(X), G)
  z / rowSums(z)
}

me_from <- function(X, model, z) {
  fit <- tryCatch(suppressWarnings(me(modelName = model, data = X, z = z)),
                  error = function(e) NULL)
  if (is.null(fit) || is.null(fit$loglik) || !is.finite(fit$loglik)) NULL else fit
}

# the best of n EM runs from random starts (half k-means partitions, half soft)
random_search <- function(X, model, G, n = n_random) {
  half <- n %/% 2
  fits <- c(lapply(seq_len(half), function(s) me_from(X, model, kmeans_z(X, G))),
            lapply(seq_len(n - half), function(s) me_from(X, model, soft_z(X, G))))
  ll <- vapply(fits, function(f) if (is.null(f)) NA else f$loglik, numeric(1))
  out <- list(n_starts = n, n_failed = sum(is.na(ll)))
  if (all(is.na(ll))) return(out)
  best <- max(ll, na.rm = TRUE)
  hit <- ll > best - 0.01
  c(out, list(loglik = best,
              bic = 2 * best - nMclustParams(model, NCOL(X), G) * log(NROW(X)),
              n_hits_kmeans = sum(hit[seq_len(half)], na.rm = TRUE),
              n_hits_soft = sum(hit[-seq_len(half)], na.rm = TRUE)),
    params_of(fits[[which.max(ll)]]))
}

hc_fit <- function(X, model, G) {
  fit <- Mclust(X, G = G, modelNames = model, verbose = FALSE)
  if (is.null(fit)) return(list(status = "NA"))
  c(list(status = "ok", loglik = fit$loglik, df = fit$df, bic = fit$bic, icl = icl(fit)),
    params_of(fit))
}

# BIC of every (model, K): mclust's table, and per cell the random search, whose
# parameters are kept where it beats mclust's fit by more than 0.01 in logL
grid <- function(X) {
  b <- mclustBIC(X, G = G_range, modelNames = models)
  hc <- lapply(models, function(m) unname(as.numeric(b[, m])))
  names(hc) <- models
  cells <- list()
  for (m in models) for (G in G_range[G_range > 1]) {
    r <- random_search(X, m, G)
    hc_bic <- b[as.character(G), m]
    better <- !is.null(r$loglik) && (is.na(hc_bic) ||
      r$loglik > (hc_bic + nMclustParams(m, NCOL(X), G) * log(NROW(X))) / 2 + 0.01)
    if (!better) r[c("weights", "means", "covariances")] <- NULL
    cells[[length(cells) + 1]] <- c(list(model = m, K = G, beats_hc = better), r)
  }
  top <- names(pickBIC(b, 3))
  top3 <- lapply(top, function(tag) {
    parts <- strsplit(tag, ",")[[1]]
    f <- hc_fit(X, parts[1], as.integer(parts[2]))
    list(model = parts[1], K = as.integer(parts[2]), bic = f$bic, loglik = f$loglik,
         df = f$df, icl = f$icl)
  })
  list(n = NROW(X), bic_hc = hc, top3_hc = top3, random = cells)
}

# ---------------------------------------------------------------- values
n_params <- list()
for (m in c(models, "E", "V")) {
  ds <- if (m %in% c("E", "V")) 1L else 1:4
  for (d in ds) for (G in 1:5) {
    n_params[[length(n_params) + 1]] <- list(model = m, d = d, K = G,
                                             n_parameters = nMclustParams(m, d, G))
  }
}

faithful_families <- list()
for (m in models) for (G in 2:3) {
  faithful_families[[length(faithful_families) + 1]] <- list(
    model = m, K = G, hc = hc_fit(X_faithful, m, G), random = random_search(X_faithful, m, G)
  )
}

gal_hc <- hc_fit(X_galaxies, "V", 4)
gal_random <- random_search(X_galaxies, "V", 4, n = 400)

refs <- list(
  generated_by = "tests/data/mclust/make_references.R",
  r_version = R.version.string,
  mclust_version = as.character(packageVersion("mclust")),
  mclust_hcUse = mclust.options("hcUse"),
  conventions = paste("BIC = 2 logL - df log n (higher is better);",
                      "ICL = BIC + 2 sum_i log z_i,map(i) (mclust's icl());",
                      "means (K, d), covariances (K, d, d), in mclust's component order;",
                      "bic_hc[model][K - 1], null where mclust gives NA"),
  data = list(
    faithful = "bayesgmm/data/faithful.csv (equal to R datasets::faithful)",
    diabetes = paste("tests/data/mclust/diabetes.csv;", heplots_check),
    galaxies = "tests/data/mclust/galaxies.csv (MASS::galaxies / 1000)"
  ),
  models = models,
  K = G_range,
  n_parameters = n_params,
  faithful = c(grid(X_faithful), list(families = faithful_families)),
  diabetes = grid(X_diabetes),
  galaxies = list(n = length(X_galaxies), V_4_hc = gal_hc, V_4_random = gal_random)
)

writeLines(toJSON(refs, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE),
           file.path(here, "references.json"))
cat("wrote", file.path(here, "references.json"), "\n")
