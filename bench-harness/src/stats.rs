//! The arithmetic of repeats: a cell's median and spread over its runs, and the ratio of one
//! broker's median to Mosquitto's from the same suite run.

use serde::{Deserialize, Serialize};

/// Median and spread of one figure over a cell's repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median: how far the repeats disagree, as a fraction of the median.
    pub rel_spread: f64,
    pub count: usize,
}

/// The median of `values` (the mean of the middle two for an even count); NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Median, range and relative spread; `None` when there is no number to summarise.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let median = median(values)?;
    let finite = values.iter().copied().filter(|x| !x.is_nan());
    let min = finite.clone().fold(f64::INFINITY, f64::min);
    let max = finite.clone().fold(f64::NEG_INFINITY, f64::max);
    let rel_spread = if median != 0.0 {
        (max - min) / median.abs()
    } else {
        0.0
    };
    Some(Spread {
        median,
        min,
        max,
        rel_spread,
        count: finite.count(),
    })
}

/// `value / reference`, or `None` when the reference is missing, zero or not a number (a ratio
/// to nothing would print as infinity and mislead).
pub fn ratio(value: f64, reference: f64) -> Option<f64> {
    if reference == 0.0 || !reference.is_finite() || !value.is_finite() {
        return None;
    }
    Some(value / reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn spread_reports_range_relative_to_median() {
        let s = spread(&[90.0, 100.0, 120.0]).expect("three values");
        assert_eq!((s.median, s.min, s.max, s.count), (100.0, 90.0, 120.0, 3));
        assert!((s.rel_spread - 0.3).abs() < 1e-12);
        let one = spread(&[5.0]).expect("one value");
        assert_eq!(one.rel_spread, 0.0);
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn ratio_refuses_a_zero_reference() {
        assert_eq!(ratio(300.0, 100.0), Some(3.0));
        assert_eq!(ratio(50.0, 200.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, f64::NAN), None);
        assert_eq!(ratio(f64::INFINITY, 1.0), None);
    }
}
