//! Parsing of the command line's quantities, in tc's spelling: durations (`50ms`), loss (`1%`), rates
//! (`100mbit`), and per-direction pairs (`50ms/20ms`: A->B then B->A).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a quantity did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The number part is missing or not a number.
    Number,
    /// The unit is not one this quantity takes.
    Unit,
    /// The value is out of range (negative, a loss above 100 %, a rate of zero bits).
    Range,
    /// More than two values separated by `/`.
    Pair,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Number => "not a number",
            ParseError::Unit => "unknown unit",
            ParseError::Range => "out of range",
            ParseError::Pair => "more than two values (expected VALUE or A_TO_B/B_TO_A)",
        })
    }
}

impl std::error::Error for ParseError {}

/// Splits `"12.5ms"` into `(12.5, "ms")`.
fn split(s: &str) -> Result<(f64, &str), ParseError> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v: f64 = num.parse().map_err(|_| ParseError::Number)?;
    if !v.is_finite() || v < 0.0 {
        return Err(ParseError::Range);
    }
    Ok((v, unit.trim()))
}

/// A duration: `s`, `ms`, `us`, `ns`; a bare `0` is zero. A bare number other than zero is rejected (tc reads
/// it as microseconds, which surprises).
pub fn duration(s: &str) -> Result<Duration, ParseError> {
    let (v, unit) = split(s)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" => 1e9,
        "ms" | "msec" => 1e6,
        "us" | "usec" => 1e3,
        "ns" | "nsec" => 1.0,
        "" if v == 0.0 => 0.0,
        _ => return Err(ParseError::Unit),
    };
    let ns = (v * scale).round();
    if ns > u64::MAX as f64 {
        return Err(ParseError::Range);
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// A loss probability: `1%` or `1` (percent, as netem), returned as a fraction in `[0, 1]`.
pub fn loss(s: &str) -> Result<f64, ParseError> {
    let (v, unit) = split(s)?;
    if !(unit.is_empty() || unit == "%") {
        return Err(ParseError::Unit);
    }
    if v > 100.0 {
        return Err(ParseError::Range);
    }
    Ok(v / 100.0)
}

/// A rate in bits per second: `bit`, `kbit`, `mbit`, `gbit` (decimal, as tc), or a bare number of bit/s;
/// `0` or `none` is unlimited (`None`).
pub fn rate(s: &str) -> Result<Option<u64>, ParseError> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (v, unit) = split(s)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(ParseError::Unit),
    };
    let bps = (v * scale).round();
    if bps > u64::MAX as f64 || (v > 0.0 && bps < 1.0) {
        return Err(ParseError::Range);
    }
    Ok(if bps == 0.0 { None } else { Some(bps as u64) })
}

/// A value per direction: `X` for both, or `X/Y` for A->B and B->A.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair<T> {
    /// Frames from interface A to interface B.
    pub ab: T,
    /// Frames from interface B to interface A.
    pub ba: T,
}

impl<T: Copy> Pair<T> {
    /// Parses `s` with `one` for each side.
    pub fn parse(s: &str, one: impl Fn(&str) -> Result<T, ParseError>) -> Result<Self, ParseError> {
        let mut parts = s.split('/');
        let ab = one(parts.next().unwrap_or(""))?;
        let ba = match parts.next() {
            Some(p) => one(p)?,
            None => ab,
        };
        if parts.next().is_some() {
            return Err(ParseError::Pair);
        }
        Ok(Pair { ab, ba })
    }
}

/// A per-direction duration (`--delay`, `--jitter`).
pub type DurationPair = Pair<Duration>;
/// A per-direction loss (`--loss`).
pub type LossPair = Pair<f64>;
/// A per-direction rate (`--rate`).
pub type RatePair = Pair<Option<u64>>;

impl FromStr for DurationPair {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Pair::parse(s, duration)
    }
}

impl FromStr for LossPair {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Pair::parse(s, loss)
    }
}

impl FromStr for RatePair {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Pair::parse(s, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(duration("50"), Err(ParseError::Unit));
        assert_eq!(duration("50min"), Err(ParseError::Unit));
        assert_eq!(duration("ms"), Err(ParseError::Number));
        assert_eq!(duration("-5ms"), Err(ParseError::Number));
        assert_eq!(duration(""), Err(ParseError::Number));
    }

    #[test]
    fn losses() {
        assert_eq!(loss("1%"), Ok(0.01));
        assert_eq!(loss("10"), Ok(0.1));
        assert_eq!(loss("0.5%"), Ok(0.005));
        assert_eq!(loss("100%"), Ok(1.0));
        assert_eq!(loss("0"), Ok(0.0));
        assert_eq!(loss("101%"), Err(ParseError::Range));
        assert_eq!(loss("1x"), Err(ParseError::Unit));
    }

    #[test]
    fn rates() {
        assert_eq!(rate("100mbit"), Ok(Some(100_000_000)));
        assert_eq!(rate("1gbit"), Ok(Some(1_000_000_000)));
        assert_eq!(rate("1.5Mbit"), Ok(Some(1_500_000)));
        assert_eq!(rate("64kbit"), Ok(Some(64_000)));
        assert_eq!(rate("9600"), Ok(Some(9600)));
        assert_eq!(rate("0"), Ok(None));
        assert_eq!(rate("none"), Ok(None));
        assert_eq!(rate("0.1bit"), Err(ParseError::Range));
        assert_eq!(rate("10mbps"), Err(ParseError::Unit));
    }

    #[test]
    fn pairs() {
        let p: DurationPair = "50ms".parse().unwrap();
        assert_eq!((p.ab, p.ba), (Duration::from_millis(50), Duration::from_millis(50)));
        let p: DurationPair = "50ms/20ms".parse().unwrap();
        assert_eq!((p.ab, p.ba), (Duration::from_millis(50), Duration::from_millis(20)));
        let p: LossPair = "10%/0".parse().unwrap();
        assert_eq!((p.ab, p.ba), (0.1, 0.0));
        let p: RatePair = "none/10mbit".parse().unwrap();
        assert_eq!((p.ab, p.ba), (None, Some(10_000_000)));
        assert_eq!("1ms/2ms/3ms".parse::<DurationPair>(), Err(ParseError::Pair));
        assert_eq!("1ms/".parse::<DurationPair>(), Err(ParseError::Number));
    }
}
