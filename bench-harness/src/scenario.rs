//! The scenario files under `bench-harness/scenarios/`: what the harness does with a run (its
//! `mode`), and the `[loadgen]` table handed to `culex-loadgen run`, checked against the
//! loadgen's own `Scenario` type when the file is read so a typo fails before any broker starts.
//!
//! ```toml
//! title = "100 pairs, QoS 1"
//! mode = "throughput"          # throughput | latency | latency-curve | idle | conn-ramp
//! [loadgen]                    # culex-loadgen scenario fields
//! kind = "pairs"
//! conns = 100
//! qos = 1
//! [quick]                      # [loadgen] fields replaced in --quick mode
//! duration_s = 2.0
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How the harness drives a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// As fast as the broker goes: delivered msgs/s, latency, CPU per message.
    Throughput,
    /// Saturation first (unpaced), then fixed total rates at fractions of it.
    LatencyCurve,
    /// One fixed rate (`total_rate` in the file), well below saturation: latency percentiles.
    Latency,
    /// Connections that connect and hold: how many the broker keeps, RSS per connection.
    Idle,
    /// Connections opened as fast as they go: connections per second, connect latency.
    ConnRamp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    name: Option<String>,
    title: String,
    mode: Mode,
    /// Replaces `--repeat` for this scenario (idle runs at 100k take half a minute each).
    #[serde(default)]
    repeat: Option<usize>,
    /// Position in the suite and in the tables (files sort by it, then by name).
    #[serde(default)]
    order: i64,
    /// How many loadgen processes share the connections (each has its own nofile limit).
    #[serde(default)]
    processes: Option<usize>,
    #[serde(default)]
    curve: Option<Curve>,
    loadgen: toml::Table,
    #[serde(default)]
    quick: toml::Table,
}

/// The load points of a latency curve, as fractions of the saturation rate.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    pub fractions: Vec<f64>,
    pub quick_fractions: Vec<f64>,
}

/// One scenario, read and checked.
#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    pub name: String,
    pub title: String,
    pub mode: Mode,
    pub repeat: Option<usize>,
    pub order: i64,
    pub processes: usize,
    pub curve: Option<Curve>,
    pub path: PathBuf,
    loadgen: toml::Table,
    quick: toml::Table,
}

/// Fields the harness owns: it sets them per run, so a scenario file may not.
const HARNESS_FIELDS: [&str; 4] = ["host", "port", "cpus", "broker_pid"];

impl ScenarioSpec {
    /// Parses a scenario file's text; `path` names it in errors and gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<ScenarioSpec, String> {
        let at = path.display();
        let file: File = toml::from_str(text).map_err(|e| format!("{at}: {e}"))?;
        let name = match file.name {
            Some(n) => n,
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{at}: no name and no usable file name"))?
                .to_string(),
        };
        for field in HARNESS_FIELDS {
            if file.loadgen.contains_key(field) || file.quick.contains_key(field) {
                return Err(format!(
                    "{at}: `{field}` is set by the harness per broker; remove it"
                ));
            }
        }
        let paced = ["rate", "total_rate"]
            .iter()
            .any(|k| file.loadgen.get(*k).and_then(toml::Value::as_float) > Some(0.0));
        if file.mode == Mode::Latency && !paced {
            return Err(format!(
                "{at}: mode latency needs a fixed rate (`total_rate` or `rate` in [loadgen])"
            ));
        }
        if file.mode == Mode::LatencyCurve {
            let curve = file.curve.as_ref().ok_or_else(|| {
                format!("{at}: mode latency-curve needs a [curve] with fractions")
            })?;
            let all = curve.fractions.iter().chain(&curve.quick_fractions);
            if curve.fractions.is_empty() || all.clone().any(|f| !(*f > 0.0 && *f <= 1.5)) {
                return Err(format!("{at}: curve fractions must be in (0, 1.5]"));
            }
        }
        let spec = ScenarioSpec {
            name,
            title: file.title,
            mode: file.mode,
            repeat: file.repeat,
            order: file.order,
            processes: file.processes.unwrap_or(1).max(1),
            curve: file.curve,
            path: path.to_path_buf(),
            loadgen: file.loadgen,
            quick: file.quick,
        };
        // Both variants must be scenarios the loadgen accepts.
        for quick in [false, true] {
            let table = spec.loadgen_table(quick, &toml::Table::new());
            check_loadgen(&table).map_err(|e| {
                let which = if quick { " (with [quick])" } else { "" };
                format!("{at}{which}: [loadgen]: {e}")
            })?;
        }
        Ok(spec)
    }

    pub fn load(path: &Path) -> Result<ScenarioSpec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        ScenarioSpec::parse(&text, path)
    }

    /// The `[loadgen]` table for one run: the file's, then `[quick]` in quick mode, then what
    /// the harness sets for this run (`extra`), each replacing the one before.
    pub fn loadgen_table(&self, quick: bool, extra: &toml::Table) -> toml::Table {
        let mut t = self.loadgen.clone();
        if quick {
            t.extend(self.quick.clone());
        }
        t.extend(extra.clone());
        t
    }

    /// The same scenario with `fields` replacing its `[loadgen]` ones in both modes (profiles
    /// pace a scenario so every run does the same work).
    pub fn with_overrides(&self, fields: &toml::Table) -> Result<ScenarioSpec, String> {
        let mut s = self.clone();
        s.loadgen.extend(fields.clone());
        for k in fields.keys() {
            s.quick.remove(k);
        }
        for quick in [false, true] {
            check_loadgen(&s.loadgen_table(quick, &toml::Table::new()))?;
        }
        Ok(s)
    }

    /// A numeric `[loadgen]` field as the run will see it (after `[quick]`).
    pub fn loadgen_f64(&self, quick: bool, field: &str) -> Option<f64> {
        let t = self.loadgen_table(quick, &toml::Table::new());
        match t.get(field)? {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The loadgen scenario kind (`pairs`, `fan-out`, …).
    pub fn kind(&self) -> String {
        self.loadgen
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or("pairs")
            .to_string()
    }

    pub fn fractions(&self, quick: bool) -> Vec<f64> {
        match &self.curve {
            Some(c) if quick && !c.quick_fractions.is_empty() => c.quick_fractions.clone(),
            Some(c) => c.fractions.clone(),
            None => Vec::new(),
        }
    }
}

/// Checks a `[loadgen]` table against `culex-loadgen`'s `Scenario` (unknown fields, types,
/// and its own consistency rules).
pub fn check_loadgen(table: &toml::Table) -> Result<(), String> {
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    let sc: culex_loadgen::scenario::Scenario = toml::from_str(&text).map_err(|e| e.to_string())?;
    sc.validate()
}

/// Every `*.toml` in `dir`, parsed, in suite order; any bad file fails the whole load.
pub fn load_dir(dir: &Path) -> Result<Vec<ScenarioSpec>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut specs = paths
        .iter()
        .map(|p| ScenarioSpec::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    specs.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("two scenarios are named `{}`", w[0]));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &str = r#"
        title = "100 pairs, QoS 1"
        mode = "throughput"
        order = 3
        [loadgen]
        kind = "pairs"
        conns = 100
        qos = 1
        duration_s = 10.0
        [quick]
        duration_s = 2.0
    "#;

    #[test]
    fn parses_and_applies_quick_then_extra() {
        let s = ScenarioSpec::parse(PAIRS, Path::new("x/pairs-qos1.toml")).expect("valid");
        assert_eq!(
            (s.name.as_str(), s.mode, s.order),
            ("pairs-qos1", Mode::Throughput, 3)
        );
        assert_eq!(s.kind(), "pairs");
        assert_eq!(s.loadgen_f64(false, "duration_s"), Some(10.0));
        assert_eq!(s.loadgen_f64(true, "duration_s"), Some(2.0));
        assert_eq!(s.loadgen_f64(true, "conns"), Some(100.0));
        let mut extra = toml::Table::new();
        extra.insert("port".into(), toml::Value::Integer(18831));
        extra.insert("duration_s".into(), toml::Value::Float(1.0));
        let t = s.loadgen_table(true, &extra);
        assert_eq!(t.get("port").and_then(|v| v.as_integer()), Some(18831));
        assert_eq!(t.get("duration_s").and_then(|v| v.as_float()), Some(1.0));
        check_loadgen(&t).expect("the merged table is a loadgen scenario");
    }

    #[test]
    fn rejects_what_the_loadgen_would_reject() {
        let typo = PAIRS.replace("conns = 100", "conn = 100");
        let e = ScenarioSpec::parse(&typo, Path::new("t.toml")).expect_err("unknown field");
        assert!(e.contains("t.toml") && e.contains("conn"), "{e}");
        let bad_qos = PAIRS.replace("qos = 1", "qos = 3");
        let e = ScenarioSpec::parse(&bad_qos, Path::new("t.toml")).expect_err("qos 3");
        assert!(e.contains("qos"), "{e}");
        let quick_bad = PAIRS.replace("duration_s = 2.0", "duration_s = 0.0");
        let e = ScenarioSpec::parse(&quick_bad, Path::new("t.toml")).expect_err("quick is bad");
        assert!(e.contains("[quick]"), "{e}");
        let owned = PAIRS.replace("qos = 1", "qos = 1\nport = 1883");
        let e = ScenarioSpec::parse(&owned, Path::new("t.toml")).expect_err("harness field");
        assert!(e.contains("port"), "{e}");
        let e = ScenarioSpec::parse("title = 1", Path::new("t.toml")).expect_err("bad file");
        assert!(e.starts_with("t.toml"), "{e}");
    }

    #[test]
    fn a_latency_scenario_needs_a_fixed_rate() {
        let paced = r#"
            title = "latency"
            mode = "latency"
            [loadgen]
            kind = "pairs"
            total_rate = 20000.0
        "#;
        let s = ScenarioSpec::parse(paced, Path::new("l.toml")).expect("valid");
        assert_eq!(s.mode, Mode::Latency);
        let unpaced = paced.replace("total_rate = 20000.0", "qos = 0");
        let e = ScenarioSpec::parse(&unpaced, Path::new("l.toml")).expect_err("no rate");
        assert!(e.contains("fixed rate"), "{e}");
    }

    #[test]
    fn a_curve_needs_sane_fractions() {
        let curve = r#"
            title = "curve"
            mode = "latency-curve"
            [curve]
            fractions = [0.1, 0.5, 1.0]
            quick_fractions = [0.5]
            [loadgen]
            kind = "pairs"
        "#;
        let s = ScenarioSpec::parse(curve, Path::new("c.toml")).expect("valid");
        assert_eq!(s.fractions(false), vec![0.1, 0.5, 1.0]);
        assert_eq!(s.fractions(true), vec![0.5]);
        let bad = curve.replace("0.1,", "-0.1,");
        assert!(ScenarioSpec::parse(&bad, Path::new("c.toml")).is_err());
        let missing = curve.replace("[curve]", "[other]");
        assert!(ScenarioSpec::parse(&missing, Path::new("c.toml")).is_err());
    }

    #[test]
    fn the_shipped_suite_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let specs = load_dir(&dir).expect("every shipped scenario is valid");
        assert!(specs.len() >= 10, "{} scenarios", specs.len());
        for mode in [
            Mode::Throughput,
            Mode::Latency,
            Mode::LatencyCurve,
            Mode::Idle,
            Mode::ConnRamp,
        ] {
            assert!(specs.iter().any(|s| s.mode == mode), "no {mode:?} scenario");
        }
        assert!(specs.windows(2).all(|w| w[0].order <= w[1].order));
    }
}
