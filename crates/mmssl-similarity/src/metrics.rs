//! Classification metrics of the evaluations (linear probe, k-NN): accuracy, balanced
//! accuracy and ROC-AUC (binary, or macro one-vs-rest for more classes).

/// Fraction of predictions equal to the labels.
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// Mean over the classes present in `labels` of the recall of that class.
pub fn balanced_accuracy(predicted: &[usize], labels: &[usize], classes: usize) -> f64 {
    let mut hit = vec![0usize; classes];
    let mut count = vec![0usize; classes];
    for (&p, &l) in predicted.iter().zip(labels) {
        if l < classes {
            count[l] += 1;
            if p == l {
                hit[l] += 1;
            }
        }
    }
    let present: Vec<f64> = (0..classes)
        .filter(|&c| count[c] > 0)
        .map(|c| hit[c] as f64 / count[c] as f64)
        .collect();
    present.iter().sum::<f64>() / present.len() as f64
}

/// Area under the ROC curve of `scores` for the positives `positive[i]`, by the rank-sum
/// (Mann-Whitney U) statistic with ties counted half. `None` if one class is absent.
pub fn binary_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties (1-based).
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[order[k]] = avg;
        }
        i = j + 1;
    }
    let rank_sum: f64 = (0..scores.len())
        .filter(|&k| positive[k])
        .map(|k| ranks[k])
        .sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// ROC-AUC from class probabilities `probs[i][c]`: for two classes the AUC of class 1, for
/// more the unweighted mean of the one-vs-rest AUCs of the classes present.
pub fn roc_auc(probs: &[Vec<f64>], labels: &[usize], classes: usize) -> Option<f64> {
    if classes == 2 {
        let s: Vec<f64> = probs.iter().map(|p| p[1]).collect();
        let pos: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        return binary_auc(&s, &pos);
    }
    let aucs: Vec<f64> = (0..classes)
        .filter_map(|c| {
            let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
            let pos: Vec<bool> = labels.iter().map(|&l| l == c).collect();
            binary_auc(&s, &pos)
        })
        .collect();
    if aucs.is_empty() {
        None
    } else {
        Some(aucs.iter().sum::<f64>() / aucs.len() as f64)
    }
}

/// Whether a proportion `observed` out of `n` trials is within two binomial standard errors
/// above the chance proportion `chance` (or below it): no evidence that it beats chance.
pub fn at_chance(observed: f64, chance: f64, n: usize) -> bool {
    if n == 0 {
        return true;
    }
    let se = (chance * (1.0 - chance) / n as f64).sqrt();
    observed <= chance + 2.0 * se
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_balanced_accuracy_by_hand() {
        let labels = [0, 0, 0, 0, 1, 1];
        let pred = [0, 0, 0, 0, 0, 1];
        assert!((accuracy(&pred, &labels) - 5.0 / 6.0).abs() < 1e-12);
        // Recall 1.0 for class 0 and 0.5 for class 1.
        assert!((balanced_accuracy(&pred, &labels, 2) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_correctly_ordered_pairs_with_ties_half() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1, 0.4: pairs won 3 + 1 + tie 0.5 = 4.5 of 6.
        let s = [0.9, 0.4, 0.5, 0.1, 0.4];
        let p = [true, true, false, false, false];
        assert!((binary_auc(&s, &p).unwrap() - 4.5 / 6.0).abs() < 1e-12);
        assert_eq!(binary_auc(&[0.1, 0.2], &[true, true]), None);
        let perfect = [vec![0.9, 0.1], vec![0.2, 0.8]];
        assert_eq!(roc_auc(&perfect, &[0, 1], 2), Some(1.0));
        let three = [
            vec![0.8, 0.1, 0.1],
            vec![0.1, 0.8, 0.1],
            vec![0.1, 0.1, 0.8],
        ];
        assert_eq!(roc_auc(&three, &[0, 1, 2], 3), Some(1.0));
    }

    #[test]
    fn chance_is_two_standard_errors() {
        // p = 0.1, n = 100: se = 0.03, so up to 0.16 is at chance.
        assert!(at_chance(0.16, 0.1, 100));
        assert!(!at_chance(0.17, 0.1, 100));
        assert!(at_chance(0.05, 0.1, 100));
        assert!(at_chance(1.0, 0.5, 0));
    }
}
