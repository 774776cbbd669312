//! Client-id and topic templates: `%i` the client index, `%c` the core, `%r` a random number,
//! `%%` a percent sign. Expanded once per client at plan time, never per message.

/// Expands `template` for client `index` on `core`; `random` supplies `%r`.
pub fn expand(
    template: &str,
    index: usize,
    core: usize,
    random: &mut impl FnMut() -> u32,
) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('i') => out.push_str(&index.to_string()),
            Some('c') => out.push_str(&core.to_string()),
            Some('r') => out.push_str(&format!("{:08x}", random())),
            Some('%') => out.push('%'),
            // An unknown escape stays as written: a topic may legitimately contain `%`.
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_every_escape() {
        let mut n = 0u32;
        let mut random = || {
            n += 1;
            n
        };
        assert_eq!(expand("dev-%i-c%c", 42, 3, &mut random), "dev-42-c3");
        assert_eq!(expand("%r/%r", 0, 0, &mut random), "00000001/00000002");
        assert_eq!(expand("100%% %x %", 1, 1, &mut random), "100% %x %");
    }

    #[test]
    fn distinct_indices_give_distinct_ids() {
        let mut random = || 0;
        let ids: std::collections::HashSet<_> = (0..1000)
            .map(|i| expand("c%i", i, 0, &mut random))
            .collect();
        assert_eq!(ids.len(), 1000);
    }
}
