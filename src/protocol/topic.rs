//! Topic names (what a PUBLISH names) and topic filters (what a SUBSCRIBE asks for), checked
//! once when parsed. Only `parse` makes one, so every value in the broker is valid.

use bytestring::ByteString;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// Zero length where the spec requires at least one character.
    Empty,
    /// A `+` or `#` in a topic name [MQTT-3.3.2-2].
    WildcardInName,
    /// `#` not last or not alone in its level [MQTT-4.7.1-2].
    MultiLevelWildcardMisplaced,
    /// `+` not alone in its level [MQTT-4.7.1-3].
    SingleLevelWildcardMisplaced,
    /// U+0000 in the text [MQTT-4.7.3-2].
    NullCharacter,
    /// Longer than 65,535 bytes.
    TooLong,
    /// `$share/` with an empty group, a group holding `+` `#` or `/`, or no filter after it.
    InvalidSharedSubscription,
}

/// A topic name: at least one character, no wildcards, no U+0000.
///
/// The one exception: an MQTT 5 PUBLISH that uses a topic alias may carry an empty name.
/// The decoder then yields `TopicName::empty_for_alias()`, and the session resolves it
/// before the message goes anywhere; `is_empty()` tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    pub fn parse(text: impl Into<ByteString>) -> Result<TopicName, TopicError> {
        let text = text.into();
        if text.is_empty() {
            return Err(TopicError::Empty);
        }
        check_common(&text)?;
        if text.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(text))
    }

    /// For the decoder, which has already checked, in one pass, everything `parse` would:
    /// non-empty, at most 65,535 bytes (a two-byte length said so), no U+0000, no wildcard.
    pub(crate) fn from_checked(text: ByteString) -> TopicName {
        debug_assert_eq!(
            TopicName::parse(text.clone()).as_ref(),
            Ok(&TopicName(text.clone()))
        );
        TopicName(text)
    }

    /// The empty name of a PUBLISH that names its topic by alias only.
    pub const fn empty_for_alias() -> TopicName {
        TopicName(ByteString::from_static(""))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Topics starting with `$` (such as `$SYS/…`) are not matched by a first-level wildcard.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic filter, possibly a shared subscription `$share/{group}/{filter}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

/// The two halves of a `$share/{group}/{filter}` subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

const SHARE_PREFIX: &str = "$share/";

impl TopicFilter {
    pub fn parse(text: impl Into<ByteString>) -> Result<TopicFilter, TopicError> {
        let text = text.into();
        if text.is_empty() {
            return Err(TopicError::Empty);
        }
        check_common(&text)?;
        let filter = match text.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let (group, filter) = rest
                    .split_once('/')
                    .ok_or(TopicError::InvalidSharedSubscription)?;
                if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                    return Err(TopicError::InvalidSharedSubscription);
                }
                filter
            }
            None => &text[..],
        };
        check_filter_levels(filter)?;
        Ok(TopicFilter(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_wildcards(&self) -> bool {
        self.matching_part().contains(['+', '#'])
    }

    /// `Some` for `$share/{group}/{filter}`.
    pub fn shared(&self) -> Option<SharedFilter<'_>> {
        let rest = self.0.strip_prefix(SHARE_PREFIX)?;
        let (group, filter) = rest.split_once('/')?;
        Some(SharedFilter { group, filter })
    }

    /// The part that is matched against topic names: the filter itself, or for a shared
    /// subscription the filter after `$share/{group}/`.
    pub fn matching_part(&self) -> &str {
        match self.shared() {
            Some(shared) => shared.filter,
            None => &self.0,
        }
    }

    /// The plain, obviously-correct matcher: the reference the router's trie is tested
    /// against. Not for the data path.
    pub fn matches(&self, topic: &TopicName) -> bool {
        let filter = self.matching_part();
        if topic.is_dollar() && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let mut topic_levels = topic.levels();
        for level in filter.split('/') {
            match level {
                "#" => return true,
                "+" => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                exact => {
                    if topic_levels.next() != Some(exact) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }
}

impl std::fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_common(text: &str) -> Result<(), TopicError> {
    if text.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    if text.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

fn check_filter_levels(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcardMisplaced);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &'static str) -> TopicFilter {
        TopicFilter::parse(text).expect("test filter is valid")
    }

    fn topic(text: &'static str) -> TopicName {
        TopicName::parse(text).expect("test topic is valid")
    }

    #[test]
    fn names_refuse_wildcards_and_emptiness() {
        assert_eq!(TopicName::parse(""), Err(TopicError::Empty));
        assert_eq!(TopicName::parse("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::parse("a\0b"), Err(TopicError::NullCharacter));
        assert!(TopicName::parse("/").is_ok());
    }

    #[test]
    fn filters_check_wildcard_placement() {
        assert!(TopicFilter::parse("#").is_ok());
        assert!(TopicFilter::parse("a/+/b/#").is_ok());
        assert!(TopicFilter::parse("+/+").is_ok());
        assert_eq!(
            TopicFilter::parse("a/#/b"),
            Err(TopicError::MultiLevelWildcardMisplaced)
        );
        assert_eq!(
            TopicFilter::parse("a#"),
            Err(TopicError::MultiLevelWildcardMisplaced)
        );
        assert_eq!(
            TopicFilter::parse("a/b+"),
            Err(TopicError::SingleLevelWildcardMisplaced)
        );
    }

    #[test]
    fn shared_filters_split_group_and_filter() {
        let shared = filter("$share/g1/a/+");
        assert_eq!(
            shared.shared(),
            Some(SharedFilter {
                group: "g1",
                filter: "a/+"
            })
        );
        assert_eq!(
            TopicFilter::parse("$share//a"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            TopicFilter::parse("$share/g"),
            Err(TopicError::InvalidSharedSubscription)
        );
        assert_eq!(
            TopicFilter::parse("$share/g+/a"),
            Err(TopicError::InvalidSharedSubscription)
        );
    }

    #[test]
    fn naive_matcher_follows_the_spec_examples() {
        assert!(filter("sport/tennis/player1/#").matches(&topic("sport/tennis/player1")));
        assert!(filter("sport/tennis/player1/#").matches(&topic("sport/tennis/player1/ranking")));
        assert!(filter("sport/#").matches(&topic("sport")));
        assert!(filter("sport/+").matches(&topic("sport/")));
        assert!(!filter("sport/+").matches(&topic("sport")));
        assert!(filter("+/+").matches(&topic("/finance")));
        assert!(filter("/+").matches(&topic("/finance")));
        assert!(!filter("+").matches(&topic("/finance")));
        assert!(!filter("#").matches(&topic("$SYS/uptime")));
        assert!(!filter("+/uptime").matches(&topic("$SYS/uptime")));
        assert!(filter("$SYS/#").matches(&topic("$SYS/uptime")));
        assert!(filter("$share/g/a/#").matches(&topic("a/b")));
    }
}
