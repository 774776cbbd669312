//! The `--cpus` / `cpus` list syntax (`0-3,6,8-9`, as `taskset -c` and cgroups write it):
//! parsed once here into a sorted list of distinct CPU indices.

use std::fmt;

/// The highest CPU index accepted: `cpu_set_t` (what `sched_setaffinity` takes) holds 1024.
pub const CPU_INDEX_MAX: usize = 1023;

/// A validated CPU list: sorted, no duplicates, never empty. Only [`CpuList::parse`] makes
/// one, so holders need not check again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// Parses `0-3,6,8-9`. Errors name the offending token.
    pub fn parse(text: &str) -> Result<CpuList, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty CPU list: expected e.g. '0-3,6'".to_string());
        }
        let mut cpus: Vec<usize> = Vec::new();
        for token in text.split(',') {
            let (first, last) = parse_token(token)?;
            for cpu in first..=last {
                if cpus.contains(&cpu) {
                    return Err(format!("CPU {cpu} appears twice (in '{token}')"));
                }
                cpus.push(cpu);
            }
        }
        cpus.sort_unstable();
        Ok(CpuList(cpus))
    }

    /// The CPUs, ascending.
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// The CPUs, ascending, as the `Settings::cpus` vector.
    pub fn into_vec(self) -> Vec<usize> {
        self.0
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for CpuList {
    type Err = String;
    fn from_str(text: &str) -> Result<CpuList, String> {
        CpuList::parse(text)
    }
}

/// One `N` or `A-B` token, as an inclusive range.
fn parse_token(token: &str) -> Result<(usize, usize), String> {
    if token.is_empty() {
        return Err("empty entry in CPU list (two commas, or a comma at an end)".to_string());
    }
    let (first, last) = match token.split_once('-') {
        Some((a, b)) => (parse_cpu(a, token)?, parse_cpu(b, token)?),
        None => {
            let cpu = parse_cpu(token, token)?;
            (cpu, cpu)
        }
    };
    if first > last {
        return Err(format!("range '{token}' runs backwards"));
    }
    Ok((first, last))
}

fn parse_cpu(text: &str, token: &str) -> Result<usize, String> {
    // Digits only: `usize::from_str` would accept a leading '+', which no CPU list uses.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{token}' is not a CPU number or range like '0-3'"));
    }
    match text.parse::<usize>() {
        Ok(cpu) if cpu <= CPU_INDEX_MAX => Ok(cpu),
        _ => Err(format!(
            "CPU '{text}' in '{token}' is above the largest index, {CPU_INDEX_MAX}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lists() {
        let cases: &[(&str, &[usize])] = &[
            ("0", &[0]),
            ("0-3", &[0, 1, 2, 3]),
            ("0-3,6", &[0, 1, 2, 3, 6]),
            ("0-3,6,8-9", &[0, 1, 2, 3, 6, 8, 9]),
            ("9,1,5-6", &[1, 5, 6, 9]),
            ("4-4", &[4]),
            (" 2,3 ", &[2, 3]),
            ("1023", &[1023]),
        ];
        for (text, want) in cases {
            let list = CpuList::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(list.as_slice(), *want, "{text}");
        }
    }

    #[test]
    fn bad_lists_name_the_token() {
        let cases = [
            ("", "empty CPU list: expected e.g. '0-3,6'"),
            ("0,,1", "empty entry in CPU list (two commas, or a comma at an end)"),
            ("0,", "empty entry in CPU list (two commas, or a comma at an end)"),
            ("a", "'a' is not a CPU number or range like '0-3'"),
            ("1-x", "'1-x' is not a CPU number or range like '0-3'"),
            ("-1", "'-1' is not a CPU number or range like '0-3'"),
            ("+1", "'+1' is not a CPU number or range like '0-3'"),
            ("1-2-3", "'1-2-3' is not a CPU number or range like '0-3'"),
            ("3-1", "range '3-1' runs backwards"),
            ("0-3,2", "CPU 2 appears twice (in '2')"),
            ("1,1", "CPU 1 appears twice (in '1')"),
            ("1024", "CPU '1024' in '1024' is above the largest index, 1023"),
            ("0-99999999999999999999999", "CPU '99999999999999999999999' in '0-99999999999999999999999' is above the largest index, 1023"),
        ];
        for (text, want) in cases {
            assert_eq!(CpuList::parse(text), Err(want.to_string()), "{text:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        let list = CpuList::parse("6,0-2").expect("valid list");
        assert_eq!(list.to_string(), "0,1,2,6");
        assert_eq!(CpuList::parse(&list.to_string()), Ok(list));
    }
}
