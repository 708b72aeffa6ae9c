//! Classification metrics of linear evaluation: accuracy, balanced accuracy and ROC-AUC
//! (binary, or macro one-vs-rest for more classes). They live in `mmssl-similarity`, beside the
//! k-NN evaluation that uses them too; this module re-exports them.

pub use mmssl_similarity::metrics::{accuracy, balanced_accuracy, binary_auc, roc_auc};
