//! Robustness statistics over question variants, cluster-bootstrap intervals and paired model
//! comparison (spec "Robustness statistics").
//!
//! Every statistic is built from one numerator/denominator pair per study
//! ([`ClusterRatio`]) and reported as the ratio of their sums. The point estimate and its
//! bootstrap interval are then the same computation: the bootstrap resamples studies (never
//! rows, which are correlated within a study) and recomputes that ratio of sums.
//!
//! - [`robustness`]: rows, studies, accuracy, flip rate, full consistency, `cs_k`, image reliance.
//! - [`bootstrap`]: the seeded cluster bootstrap and its [`Interval`]; [`percentile_linear`]
//!   (numpy's) and [`percentile`] (over unsorted values, for the dashboard's colour scale).
//! - [`mcnemar`]: clustered (Durkalski) and exact McNemar tests for two models on the same rows.

pub mod bootstrap;
pub mod mcnemar;
pub mod robustness;

pub use bootstrap::{
    BootstrapConfig, DEFAULT_LEVEL, DEFAULT_RESAMPLES, Interval, UNIT_STUDY, UNIT_SUBJECT, cluster_bootstrap, percentile, percentile_linear,
};
pub use mcnemar::{McNemar, PairedRow, StudyCounts, exact_mcnemar_p, mcnemar, mcnemar_from_counts, pair_rows, study_counts};
pub use robustness::{
    ClusterRatio, Study, VariantRow, accuracy, accuracy_parts, consensus_score, cs_k, cs_k_parts, flip_parts, flip_parts_for_strategy,
    flip_rate, flip_rate_by_strategy, full_consistency, full_consistency_parts, group_studies, image_reliance, image_reliance_parts,
    merge_clusters, ratio, strategies,
};
